"""Object keys: the one layout shared by the local directory store, the S3 bucket and Argo's artifacts.

builds/<tag>/manifest.json is written last; its presence is what makes a build tag complete and immutable.
A publish writes its files under its own attempt, builds/<tag>/attempts/<attempt>/, and its manifest names that
attempt: nothing but the run that commits a tag ever writes the files that tag's manifest lists, so two publishes
of one tag cannot mix their files. Readers find a build's files through its manifest (jobs/core/store/registry.py).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timezone

ARTIFACTS = ("dataset", "adapter", "report")  # one folder per stage output, in pipeline order
OPTIONAL_ARTIFACTS = ("index",)  # only builds whose spec has a `retrieval:` section have (and list) it
ATTEMPT_TIME = "%Y%m%dT%H%M%SZ"  # an attempt id starts with its UTC start time: `make gc` reads its age from it


def build_prefix(tag: str) -> str:
    return f"builds/{tag}/"


def manifest_key(tag: str) -> str:
    return f"builds/{tag}/manifest.json"


def new_attempt(now: datetime | None = None) -> str:
    """A publish attempt's id, unique across machines: its UTC start time and 32 random bits."""
    return f"{(now or datetime.now(timezone.utc)):{ATTEMPT_TIME}}-{secrets.token_hex(4)}"


def attempt_started(attempt: str) -> datetime | None:
    """When an attempt started (from its id); None for a name that is not an attempt id."""
    try:
        return datetime.strptime(attempt.split("-")[0], ATTEMPT_TIME).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def attempt_prefix(tag: str, attempt: str) -> str:
    return f"builds/{tag}/attempts/{attempt}/"


def artifact_prefix(tag: str, artifact: str, attempt: str | None = None) -> str:
    """Where one artifact of a build lives: under the attempt its manifest names. `attempt` None is the layout
    of manifest schema 1 (builds published before attempts existed): builds/<tag>/<artifact>/."""
    if artifact not in ARTIFACTS + OPTIONAL_ARTIFACTS:
        raise ValueError(f"unknown artifact {artifact!r}; one of {ARTIFACTS + OPTIONAL_ARTIFACTS}")
    return (attempt_prefix(tag, attempt) if attempt else build_prefix(tag)) + f"{artifact}/"


def attempt_of_key(key: str) -> tuple[str, str] | None:
    """(tag, attempt) of a key under builds/<tag>/attempts/<attempt>/, else None."""
    parts = key.split("/")
    if len(parts) >= 5 and parts[0] == "builds" and parts[2] == "attempts":
        return parts[1], parts[3]
    return None


def source_key(sha256: str) -> str:
    return f"sources/{sha256}"


# A cluster run's intermediates in the artifact repository, under runs/<run-id>/ (Argo's key-only artifacts; the
# workflow, submit and the local runner all take their keys from here). Folders have no trailing slash: an
# output's key is the folder, an input adds "/" to read everything under it.
RUN_KEYS = {
    "data": "checkout/data.tgz",  # data/ as committed, packed by `make submit`
    "curated": "curate/dataset",  # curate's output when synthesize follows
    "dataset": "dataset",  # the dataset train, eval and publish read (synthesize's, or curate's without synthesis)
    "index": "index",  # the retrieval index (specs with `retrieval:`)
    "adapter": "train/adapter",
    "report": "eval/report",
    "report_html": "eval/report.html",
    "metrics": "eval/metrics.json",
}


def run_key(run_id: str, name: str) -> str:
    return f"runs/{run_id}/{RUN_KEYS[name]}"


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


SYNTHESIS_CACHE = "cache/synthesis/"


def writer_slug(name: str) -> str:
    """A key-safe folder name for a writer: readable, plus a hash so two names never collide."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
