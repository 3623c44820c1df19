"""Provenance helpers: file hashes, git state, library versions. Standard library only."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from jobs.core.repo import REPO_ROOT

# Every library whose version can change what a stage produces; each stage records those it has installed.
LIBRARIES = ("quantum-slm", "torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets", "tokenizers",
             "sentence-transformers", "sacrebleu", "rouge-score", "pypdf", "pyarrow", "numpy", "jinja2", "pyyaml",
             "boto3")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_under(folder: str | Path, exclude: tuple[str, ...] = ()) -> list[tuple[str, Path]]:
    """(relative posix path, file) for every file under folder, sorted; top-level names in `exclude` skipped."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    pairs = [(p.relative_to(folder), p) for p in files]
    return [(rel.as_posix(), p) for rel, p in pairs if rel.parts[0] not in exclude]


def file_records(folder: str | Path, exclude: tuple[str, ...] = ()) -> list[dict]:
    """[{path, sha256, bytes}] for every file under folder (see files_under)."""
    return [{"path": rel, "sha256": sha256_file(p), "bytes": p.stat().st_size}
            for rel, p in files_under(folder, exclude)]


def training_fingerprint(spec, train_sha256: str) -> str:
    """What an adapter or a training checkpoint was made from: the base model, the train section of the spec
    and the training data (sha256 of train.parquet). Equal fingerprints, and only those, may resume each
    other's checkpoints: the train stage and the local build decide with this one function.
    train.execution is left out: its knobs change speed and memory, never what is learned, so a run may
    resume another's checkpoints with a different micro-batch size or packing."""
    d = spec.to_dict()
    train = {k: v for k, v in d["train"].items() if k != "execution"}
    what = {"base_model": d["base_model"], "train": train, "dataset": train_sha256}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def library_versions() -> dict[str, str]:
    """Python's version and those of the LIBRARIES installed here (a stage's image carries only its own)."""
    versions = {"python": platform.python_version()}
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
