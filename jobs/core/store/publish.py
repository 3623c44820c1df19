"""Publish one build to the store: artifacts first, manifest.json last (the commit point).

    python -m jobs.core.store.publish --spec data/builds/v2.yaml --tag v2 \
        --dataset DATASET_DIR --adapter ADAPTER_DIR --report REPORT_DIR [--index INDEX_DIR] [--sources DIR ...]

The manifest ties together the git commit, the sha256 of every source document and artifact file, the resolved
spec, library versions, stage timings and headline metrics. A tag whose manifest exists is never written again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from jobs.core.store import keys
from jobs.core.store import tracking
from jobs.core.errors import QslmError
from jobs.core.store.provenance import file_records, git_state, library_versions
from jobs.core.repo import REPO_ROOT
from jobs.core.spec.tags import check_tag
from jobs.core.store.registry import refuse_complete
from jobs.core.spec.load import load_spec
from jobs.core.store.backends import KeyExists, StoreError, open_store

MANIFEST_SCHEMA = 2  # 2: files under builds/<tag>/attempts/<attempt>/, named by the manifest's `attempt`
NOT_PUBLISHED = ("checkpoints",)  # resume state inside the adapter folder: large and only useful mid-run
# A publish that has not committed within this many seconds gives up: `make gc` removes uncommitted attempts
# only when they are older than twice this (jobs/core/store/gc.py), so it never deletes files a commit will name.
COMMIT_WITHIN_S = 6 * 3600


class PublishError(QslmError):
    pass


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PublishError(f"{path} is missing: the {what} folder is incomplete (did the stage finish?)") from None
    except json.JSONDecodeError as exc:
        raise PublishError(f"{path} is not valid JSON ({exc})") from None


def source_documents(dataset: Path, folders: list[str]) -> list[tuple[dict, bytes]]:
    """({path, sha256, bytes}, content) of exactly the documents curate read (curate-info.json's `sources`), read
    back from the repository or the source folders and checked against the sha256 curate recorded. Nothing else
    in those folders is stored: not a `.env`, not `.git/`, not a file curate skipped."""
    records = _read_json(dataset / "curate-info.json", "dataset").get("sources")
    if not isinstance(records, list) or not records:
        raise PublishError(f"{dataset / 'curate-info.json'} lists no source documents: the dataset was made by an "
                           f"older curate; rerun curate")
    # curate names a document repository-relative, or `<source folder name>/<path>` outside the repository
    roots = [REPO_ROOT] + [(p if p.is_dir() else p.parent).parent for p in (Path(f).resolve() for f in folders)]
    out = []
    for rec in records:
        for root in roots:
            path = (root / rec["path"]).resolve()
            if path.is_relative_to(root) and path.is_file():
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() == rec["sha256"]:
                    out.append((rec, data))
                    break
        else:
            raise PublishError(f"{rec['path']}: the document curate read is missing or has changed since (its "
                               f"sha256 differs); rerun curate so the dataset and the stored sources agree")
    return out


def build_manifest(spec, tag: str, attempt: str, folders: dict[str, Path], git: dict) -> dict:
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
        "attempt": attempt,
        "status": "passed" if gate.get("passed") else "failed-gate",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git,
        "spec": spec.to_dict(),
        "base_model": spec.base_model.id,
        # the build's lineage with base_model (jobs/core/store/lineage.py): which questions its scores are on
        "suite": {k: metrics.get("suite", {}).get(k) for k in ("name", "sha256", "questions")},
        # a synthesized dataset folder carries curate's info (unchanged) and its own, with the final hash
        "dataset_sha256": (synthesized or infos["curate"]).get("dataset_sha256"),
        "sources": infos["curate"].get("sources"),
        "artifacts": {name: file_records(folder, exclude=NOT_PUBLISHED) for name, folder in folders.items()},
        "versions": {stage: info.get("versions", {}) for stage, info in infos.items()} | {"publish": library_versions()},
        "timings_s": {stage: info.get("seconds") for stage, info in infos.items()},
        "metrics": metrics.get("headline", {}),
        "gate": gate,
        "previous": metrics.get("previous_tag"),
    }


def publish(spec, tag: str, dataset: Path, adapter: Path, report: Path, sources: list[str] | None = None,
            git: dict | None = None, store=None, index: Path | None = None) -> dict:
    """Upload under a new attempt, then commit it with the manifest; a run that loses the commit to another has
    written only under its own attempt, which no manifest names (`make gc` removes it)."""
    store = store or open_store()
    check_tag(tag, PublishError)
    refuse_complete(store, tag, PublishError)
    started = time.monotonic()
    attempt = keys.new_attempt()
    folders = {"dataset": Path(dataset), "adapter": Path(adapter), "report": Path(report)}
    folders |= index_folder(spec, index)
    manifest = build_manifest(spec, tag, attempt, folders, git or git_state())
    docs = source_documents(folders["dataset"], list(sources) if sources else list(spec.curate.sources))
    try:
        for rec, data in docs:  # content-addressed: a document already stored is not sent again
            if not store.exists(keys.source_key(rec["sha256"])):
                store.put_bytes(keys.source_key(rec["sha256"]), data)
        for name, folder in folders.items():
            for rec in manifest["artifacts"][name]:
                store.put_file(keys.artifact_prefix(tag, name, attempt) + rec["path"], folder / rec["path"])
    except StoreError as exc:
        raise PublishError(f"{exc}. Build {tag!r} was not committed; run publish again") from None
    manifest["timings_s"]["publish"] = round(time.monotonic() - started, 3)
    if time.monotonic() - started > COMMIT_WITHIN_S:
        raise PublishError(f"publishing {tag!r} took over {COMMIT_WITHIN_S // 3600} h, so `make gc` may already "
                           f"be removing its files; nothing was committed: run publish again")
    commit(store, tag, json.dumps(manifest, indent=2, sort_keys=True).encode(), attempt)
    return manifest


def index_folder(spec, index: Path | None) -> dict[str, Path]:
    """The retrieval index (python -m jobs.index) as the artifact `index`: required when the spec has `retrieval:`,
    left out when it has none (the workflow passes --index to every build; a build without the section has none)."""
    if spec.retrieval is None:
        return {}
    if index is None:
        raise PublishError("the spec has a `retrieval:` section but no --index folder was given: run "
                           "python -m jobs.index and publish with --index INDEX_DIR")
    if not (Path(index) / "index.json").is_file():
        raise PublishError(f"{index}: not a retrieval index (no index.json); build it with python -m jobs.index")
    return {"index": Path(index)}


def commit(store, tag: str, body: bytes, attempt: str) -> None:
    """Write the manifest if the tag has none. A retried write whose first try landed (the answer was lost on
    the way back) finds its own manifest there: that is a commit, not a lost race. S3 answers 409 when another
    conditional write to the key is in flight; if that one then fails, the key is still free: try again."""
    key = keys.manifest_key(tag)
    try:
        for _ in range(3):
            try:
                store.create_bytes(key, body)
                return
            except KeyExists:
                if store.exists(key):
                    break
        if store.get_bytes(key) != body:
            raise PublishError(f"build {tag!r} was completed by another run while this one was publishing; this "
                               f"run's files (attempt {attempt}) are in no manifest, and `make gc` removes them")
    except StoreError as exc:
        raise PublishError(f"{exc}. Whether build {tag!r} was committed is unknown: `make show VERSION={tag}` "
                           f"tells; if it is not complete, run publish again") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Publish a build's dataset, adapter and report to the store, "
                                            "manifest last. Store from QSLM_STORE (directory or s3://bucket).")
    p.add_argument("--spec", required=True, help="build spec YAML (or resolved spec JSON)")
    p.add_argument("--tag", required=True, help="build tag, e.g. v2")
    p.add_argument("--dataset", required=True, type=Path)
    p.add_argument("--adapter", required=True, type=Path)
    p.add_argument("--report", required=True, type=Path)
    p.add_argument("--index", type=Path, help="retrieval index folder (required when the spec has `retrieval:`)")
    p.add_argument("--sources", nargs="*", help="source folders (default: the spec's curate.sources)")
    p.add_argument("--git-commit", help="commit the build was made from (default: git rev-parse HEAD)")
    p.add_argument("--git-dirty", choices=["true", "false"], help="whether the tree had uncommitted changes")
    args = p.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        git = None
        if args.git_commit:
            git = {"commit": args.git_commit, "dirty": None if args.git_dirty is None else args.git_dirty == "true"}
        manifest = publish(spec, args.tag, args.dataset, args.adapter, args.report, args.sources, git,
                           index=args.index)
    except QslmError as exc:
        print(f"publish: error: {exc}", file=sys.stderr)
        return 2
    print(f"published {args.tag} ({manifest['status']}) to {open_store().url}: "
          f"{sum(len(v) for v in manifest['artifacts'].values())} files, manifest last")
    folders = {"dataset": args.dataset, "adapter": args.adapter, "report": args.report}
    tracking.log_build(manifest, folders, open_store().url)  # MLFLOW_TRACKING_URI only; never fails the build
    return 0


if __name__ == "__main__":
    sys.exit(main())
