"""Publish one build to the store: artifacts first, manifest.json last (the commit point).

    python -m jobs.core.publish --spec data/builds/v2.yaml --tag v2 \
        --dataset DATASET_DIR --adapter ADAPTER_DIR --report REPORT_DIR [--sources DIR ...]

The manifest ties together the git commit, the sha256 of every source document and artifact file, the resolved
spec, library versions, stage timings and headline metrics. A tag whose manifest exists is never written again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from jobs.core import keys
from jobs.core.errors import QslmError
from jobs.core.provenance import file_records, git_state, library_versions, sha256_file
from jobs.core.spec import REPO_ROOT, TAG_PATTERN, load_spec
from jobs.core.store import KeyExists, open_store

MANIFEST_SCHEMA = 1
NOT_PUBLISHED = ("checkpoints",)  # resume state inside the adapter folder: large and only useful mid-run


class PublishError(QslmError):
    pass


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PublishError(f"{path} is missing: the {what} folder is incomplete (did the stage finish?)") from None
    except json.JSONDecodeError as exc:
        raise PublishError(f"{path} is not valid JSON ({exc})") from None


def source_files(folders: list[str]) -> list[tuple[dict, Path]]:
    """([{path, sha256, bytes}], file) for every source document; paths relative to the repo when inside it."""
    out = []
    for folder in map(Path, folders):
        folder = folder.resolve()
        files = sorted(x for x in folder.rglob("*") if x.is_file()) if folder.is_dir() else [folder]
        base = REPO_ROOT if folder.is_relative_to(REPO_ROOT) else folder.parent
        for f in files:
            out.append(({"path": f.relative_to(base).as_posix(), "sha256": sha256_file(f),
                         "bytes": f.stat().st_size}, f))
    return out


def build_manifest(spec, tag: str, folders: dict[str, Path], sources: list[dict], git: dict) -> dict:
    infos = {
        "curate": _read_json(folders["dataset"] / "curate-info.json", "dataset"),
        "train": _read_json(folders["adapter"] / "train-info.json", "adapter"),
        "eval": _read_json(folders["report"] / "eval-info.json", "report"),
    }
    synthesized = None
    if (folders["dataset"] / "synthesize-info.json").is_file():
        synthesized = infos["synthesize"] = _read_json(folders["dataset"] / "synthesize-info.json", "dataset")
    gate = _read_json(folders["report"] / "gate.json", "report")
    metrics = _read_json(folders["report"] / "metrics.json", "report")
    for required in ("adapter_config.json", "adapter_model.safetensors"):
        if not (folders["adapter"] / required).is_file():
            raise PublishError(f"{folders['adapter'] / required} is missing: the adapter folder is incomplete")
    return {
        "schema": MANIFEST_SCHEMA,
        "tag": tag,
        "status": "passed" if gate.get("passed") else "failed-gate",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git,
        "spec": spec.to_dict(),
        "base_model": spec.base_model.id,
        # a synthesized dataset folder carries curate's info (unchanged) and its own, with the final hash
        "dataset_sha256": (synthesized or infos["curate"]).get("dataset_sha256"),
        "sources": sources,
        "artifacts": {name: file_records(folder, exclude=NOT_PUBLISHED) for name, folder in folders.items()},
        "versions": {stage: info.get("versions", {}) for stage, info in infos.items()} | {"publish": library_versions()},
        "timings_s": {stage: info.get("seconds") for stage, info in infos.items()},
        "metrics": metrics.get("headline", {}),
        "gate": gate,
        "previous": metrics.get("previous_tag"),
    }


def publish(spec, tag: str, dataset: Path, adapter: Path, report: Path, sources: list[str] | None = None,
            git: dict | None = None, store=None) -> dict:
    store = store or open_store()
    if not TAG_PATTERN.match(tag):
        raise PublishError(f"{tag!r} is not a valid build tag")
    if store.exists(keys.manifest_key(tag)):
        raise PublishError(f"build {tag!r} is already complete in {store.url}; a tag is immutable. "
                           f"Nothing was written. Use a new tag (copy data/builds/{tag}.yaml to a new name).")
    started = time.perf_counter()
    folders = {"dataset": Path(dataset), "adapter": Path(adapter), "report": Path(report)}
    docs = source_files(list(sources) if sources else list(spec.curate.sources))
    manifest = build_manifest(spec, tag, folders, [rec for rec, _ in docs], git or git_state())
    for rec, path in docs:  # content-addressed: a document already stored is not sent again
        if not store.exists(keys.source_key(rec["sha256"])):
            store.put_file(keys.source_key(rec["sha256"]), path)
    for name, folder in folders.items():
        for rec in manifest["artifacts"][name]:
            store.put_file(keys.artifact_prefix(tag, name) + rec["path"], folder / rec["path"])
    manifest["timings_s"]["publish"] = round(time.perf_counter() - started, 3)
    try:
        store.create_bytes(keys.manifest_key(tag), json.dumps(manifest, indent=2, sort_keys=True).encode())
    except KeyExists:
        raise PublishError(f"build {tag!r} was completed by another run while this one was publishing; "
                           f"this run's files were not recorded in any manifest") from None
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Publish a build's dataset, adapter and report to the store, "
                                            "manifest last. Store from QSLM_STORE (directory or s3://bucket).")
    p.add_argument("--spec", required=True, help="build spec YAML (or resolved spec JSON)")
    p.add_argument("--tag", required=True, help="build tag, e.g. v2")
    p.add_argument("--dataset", required=True, type=Path)
    p.add_argument("--adapter", required=True, type=Path)
    p.add_argument("--report", required=True, type=Path)
    p.add_argument("--sources", nargs="*", help="source folders (default: the spec's curate.sources)")
    p.add_argument("--git-commit", help="commit the build was made from (default: git rev-parse HEAD)")
    p.add_argument("--git-dirty", choices=["true", "false"], help="whether the tree had uncommitted changes")
    args = p.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        git = None
        if args.git_commit:
            git = {"commit": args.git_commit, "dirty": None if args.git_dirty is None else args.git_dirty == "true"}
        manifest = publish(spec, args.tag, args.dataset, args.adapter, args.report, args.sources, git)
    except QslmError as exc:
        print(f"publish: error: {exc}", file=sys.stderr)
        return 2
    print(f"published {args.tag} ({manifest['status']}) to {open_store().url}: "
          f"{sum(len(v) for v in manifest['artifacts'].values())} files, manifest last")
    return 0


if __name__ == "__main__":
    sys.exit(main())
