"""Object keys: the one layout shared by the local directory store, the S3 bucket and Argo's artifacts.

builds/<tag>/manifest.json is written last; its presence is what makes a build tag complete and immutable.
"""

from __future__ import annotations

ARTIFACTS = ("dataset", "adapter", "report")  # one folder per stage output, in pipeline order


def build_prefix(tag: str) -> str:
    return f"builds/{tag}/"


def manifest_key(tag: str) -> str:
    return f"builds/{tag}/manifest.json"


def artifact_prefix(tag: str, artifact: str) -> str:
    if artifact not in ARTIFACTS:
        raise ValueError(f"unknown artifact {artifact!r}; one of {ARTIFACTS}")
    return f"builds/{tag}/{artifact}/"


def source_key(sha256: str) -> str:
    return f"sources/{sha256}"


def run_prefix(run_id: str, stage: str) -> str:
    return f"runs/{run_id}/{stage}/"


CURRENT_KEY = "registry/current.json"
HISTORY_KEY = "registry/history.jsonl"


def tag_of_manifest_key(key: str) -> str | None:
    parts = key.split("/")
    if len(parts) == 3 and parts[0] == "builds" and parts[2] == "manifest.json":
        return parts[1]
    return None


def synthesis_cache_key(writer_slug: str, key: str) -> str:
    """One cached generation of the synthesis stage. Outside builds/: builds are immutable and written only by
    their committing run, while the cache is shared by every build that uses the same writer (v3 reuses v2's)."""
    return f"cache/synthesis/{writer_slug}/{key[:2]}/{key}.json"


def synthesis_cache_prefix(writer_slug: str) -> str:
    return f"cache/synthesis/{writer_slug}/"
