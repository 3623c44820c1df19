"""Provenance helpers: file hashes, git state, library versions. Standard library only."""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path

from jobs.core.spec import REPO_ROOT

LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets", "tokenizers",
             "sentence-transformers", "pypdf", "boto3", "quantum-slm")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_records(folder: str | Path, exclude: tuple[str, ...] = ()) -> list[dict]:
    """[{path, sha256, bytes}] for every file under folder, sorted; top-level names in `exclude` skipped."""
    folder = Path(folder)
    out = []
    for p in sorted(x for x in folder.rglob("*") if x.is_file()):
        rel = p.relative_to(folder)
        if rel.parts[0] in exclude:
            continue
        out.append({"path": rel.as_posix(), "sha256": sha256_file(p), "bytes": p.stat().st_size})
    return out


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_state(root: Path = REPO_ROOT) -> dict:
    """{commit, dirty}; commit is 'unknown' outside a git checkout (e.g. in a container)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root,
                                    capture_output=True, text=True, check=True).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}
