"""The local build: curate -> [synthesize] -> train -> eval -> publish, each stage run as its own command.

    python -m jobs.core.build --tag smoke          # what `make build VERSION=smoke` runs

Stages run as subprocesses with exactly the commands the images and the Argo workflow run, in a work folder
(.work/<tag>/); publish then writes the store, manifest last. A tag already complete in the store is refused
before any work starts, and the store is left untouched.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from jobs.core import keys
from jobs.core.errors import QslmError
from jobs.core.model import resolve_base_model
from jobs.core.provenance import sha256_file, training_fingerprint
from jobs.core.registry import fetch_artifact, previous_build
from jobs.core.spec import GATE_FAILED, REPO_ROOT, spec_by_tag
from jobs.core.store import open_store


class BuildError(QslmError):
    pass


def _stage(name: str, args: list[str]) -> int:
    cmd = [sys.executable, "-m", f"jobs.{name}", *args]
    print(f"\n==> {name}: {' '.join(cmd[1:])}", flush=True)
    started = time.perf_counter()
    rc = subprocess.run(cmd, cwd=REPO_ROOT).returncode
    print(f"<== {name}: exit {rc} after {time.perf_counter() - started:.1f} s", flush=True)
    return rc


def build(tag: str, work_root: Path) -> int:
    spec = spec_by_tag(tag)
    store = open_store()
    if store.exists(keys.manifest_key(tag)):
        raise BuildError(f"build {tag!r} already exists in the store {store.url} and a tag is immutable; nothing "
                         f"was changed. See it with `make show VERSION={tag}`, or build under a new tag "
                         f"(copy data/builds/{tag}.yaml to data/builds/<new-tag>.yaml).")
    print(f"base model: {resolve_base_model(spec)}", flush=True)  # fail fast, before any stage runs
    work = work_root / tag
    dataset, adapter, report, previous = (work / d for d in ("dataset", "adapter", "report", "previous"))
    curated = work / "curated" if spec.synthesize else dataset  # with synthesis, train reads synthesize's output
    for d in (curated, dataset, report, previous):  # the adapter keeps its checkpoints: a rerun resumes training
        shutil.rmtree(d, ignore_errors=True)
    spec_file = spec.source_file
    if _stage("curate", ["--spec", spec_file, "--out", str(curated)]) != 0:
        raise BuildError("curate failed (see its message above); nothing was published")
    if spec.synthesize and _stage("synthesize", ["--spec", spec_file, "--dataset", str(curated),
                                                 "--out", str(dataset)]) != 0:
        raise BuildError("synthesize failed (see its message above); nothing was published. Its replies are "
                         "cached in the store: rerunning resumes")
    # A rerun resumes training only from checkpoints made from the same inputs (the train stage's own rule);
    # others are set aside before the stage would refuse them.
    stamp = work / "adapter.fingerprint"
    fingerprint = training_fingerprint(spec, sha256_file(dataset / "train.parquet"))
    if stamp.is_file() and stamp.read_text() != fingerprint:
        shutil.rmtree(adapter, ignore_errors=True)
    adapter.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    if _stage("train", ["--spec", spec_file, "--dataset", str(dataset), "--out", str(adapter)]) != 0:
        raise BuildError("train failed (see its message above); nothing was published. Rerunning the same "
                         "command resumes from the last checkpoint.")
    eval_args = ["--spec", spec_file, "--dataset", str(dataset), "--adapter", str(adapter), "--out", str(report)]
    prev = previous_build(store, tag)
    if prev:
        fetch_artifact(store, prev, "report", previous)  # checked against its manifest
        eval_args += ["--previous", str(previous)]
        print(f"comparing against previous build {prev}", flush=True)
    rc = _stage("eval", eval_args)
    if rc not in (0, GATE_FAILED):
        raise BuildError("eval failed (see its message above); nothing was published")
    if _stage("core.publish", ["--spec", spec_file, "--tag", tag, "--dataset", str(dataset),
                               "--adapter", str(adapter), "--report", str(report)]) != 0:
        raise BuildError("publish failed (see its message above)")
    manifest = json.loads(store.get_bytes(keys.manifest_key(tag)))
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nbuild {tag}: {manifest['status']} -> {store.url}/builds/{tag}/")
    for name, value in sorted(manifest.get("metrics", {}).items()):
        if isinstance(value, (int, float)):
            print(f"  {name:<24} {value:.4f}")
    print(f"  report: {store.url}/builds/{tag}/report/report.html")
    if manifest["status"] != "passed":
        print(f"build {tag} FAILED its eval gate; it is stored as failed-gate and cannot be promoted.",
              file=sys.stderr)
        return GATE_FAILED
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run a whole build locally: curate, train, eval, publish.")
    p.add_argument("--tag", required=True, help="build tag: data/builds/<tag>.yaml")
    p.add_argument("--work", type=Path, default=REPO_ROOT / ".work", help="scratch folder (default .work/)")
    args = p.parse_args(argv)
    try:
        return build(args.tag, args.work)
    except QslmError as exc:
        print(f"build: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
