"""The local build: curate -> [synthesize] -> train -> eval -> publish, each stage run as its own command.

    python -m jobs.core.build --tag smoke          # what `make build VERSION=smoke` runs

Stages run as subprocesses with exactly the commands the images and the Argo workflow run, in a work folder
(.work/<tag>/); publish then writes the store, manifest last. A tag already complete in the store is refused
before any work starts, and the store is left untouched. Each stage runs in a process group of its own that
dies with the driver, however the driver ends (Ctrl-C, SIGTERM, SIGKILL): no stage outlives it to keep writing
into the work folder a rerun uses.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobs.core import keys
from jobs.core.errors import QslmError
from jobs.core.model import resolve_base_model
from jobs.core.provenance import sha256_file, training_fingerprint
from jobs.core.registry import fetch_artifact, previous_build, read_manifest
from jobs.core.spec import GATE_FAILED, HEADLINE, REPO_ROOT, spec_by_tag
from jobs.core.store import open_store


class BuildError(QslmError):
    pass


# Runs in the stage's process group and holds the read end of a pipe whose write end only the driver has: when
# the driver ends in any way (exit, exception, SIGKILL), the pipe closes and this kills the whole group.
WATCHER = "import os, signal, sys; sys.stdin.buffer.read(); os.killpg(0, signal.SIGKILL)"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(driver: int):
    """preexec_fn for the stage (Linux): SIGKILL when the driver dies, even before the watcher is in place."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the watcher alone kills the stage
        return None

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != driver:  # the driver died before prctl took effect
            os._exit(1)
    return arm


def run_in_group(cmd: list[str]) -> int:
    """Run `cmd` in a process group of its own that dies with this process; returns its exit status."""
    read, write = os.pipe()
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER], stdin=read, process_group=0)
    os.close(read)
    try:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, process_group=watcher.pid, preexec_fn=_die_with(os.getpid()))
        return proc.wait()
    finally:
        os.close(write)  # the watcher wakes and kills what is left of the group: the stage's own children too
        watcher.wait()


def _stage(name: str, args: list[str]) -> int:
    cmd = [sys.executable, "-m", f"jobs.{name}", *args]
    print(f"\n==> {name}: {' '.join(cmd[1:])}", flush=True)
    started = time.perf_counter()
    rc = run_in_group(cmd)
    print(f"<== {name}: exit {rc} after {time.perf_counter() - started:.1f} s", flush=True)
    return rc


def build(tag: str, work_root: Path) -> int:
    spec = spec_by_tag(tag)
    store = open_store()
    store.check()  # a store that cannot be written fails now, not after the stages have run
    if store.exists(keys.manifest_key(tag)):
        raise BuildError(f"build {tag!r} already exists in the store {store.url} and a tag is immutable; nothing "
                         f"was changed. See it with `make show VERSION={tag}`, or build under a new tag "
                         f"(copy data/builds/{tag}.yaml to data/builds/<new-tag>.yaml).")
    print(f"base model: {resolve_base_model(spec)}", flush=True)  # fail fast, before any stage runs
    work = work_root / tag
    dataset, adapter, report, previous, index = (work / d for d in ("dataset", "adapter", "report", "previous",
                                                                    "index"))
    curated = work / "curated" if spec.synthesize else dataset  # with synthesis, train reads synthesize's output
    for d in (curated, dataset, report, previous, index):  # the adapter keeps its checkpoints: a rerun resumes training
        shutil.rmtree(d, ignore_errors=True)
    spec_file = spec.source_file
    if _stage("curate", ["--spec", spec_file, "--out", str(curated)]) != 0:
        raise BuildError("curate failed (see its message above); nothing was published")
    if spec.synthesize and _stage("synthesize", ["--spec", spec_file, "--dataset", str(curated),
                                                 "--out", str(dataset)]) != 0:
        raise BuildError("synthesize failed (see its message above); nothing was published. Its replies are "
                         "cached in the store: rerunning resumes")
    with_index = ["--index", str(index)] if spec.retrieval else []  # the retrieval index, for eval and publish
    if with_index and _stage("index", ["--spec", spec_file, "--dataset", str(dataset), "--out", str(index)]) != 0:
        raise BuildError("index failed (see its message above); nothing was published")
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
    eval_args = ["--spec", spec_file, "--dataset", str(dataset), "--adapter", str(adapter), "--out", str(report),
                 *with_index]
    prev = previous_build(store, tag)
    if prev:
        fetch_artifact(store, prev, "report", previous)  # checked against its manifest
        eval_args += ["--previous", str(previous)]
        print(f"comparing against previous build {prev}", flush=True)
    rc = _stage("eval", eval_args)
    if rc not in (0, GATE_FAILED):
        raise BuildError("eval failed (see its message above); nothing was published")
    if _stage("core.publish", ["--spec", spec_file, "--tag", tag, "--dataset", str(dataset),
                               "--adapter", str(adapter), "--report", str(report), *with_index]) != 0:
        raise BuildError("publish failed (see its message above)")
    manifest = read_manifest(store, tag)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nbuild {tag}: {manifest['status']} -> {store.url}/{keys.build_prefix(tag)}")
    metrics = manifest.get("metrics", {})
    print(f"  {'headline':<18} {'adapter':>10} {'base':>10} {'delta':>10}")
    for name in HEADLINE:  # every metric (diagnostics too) is in the report and `make show`
        row = [metrics.get(prefix + name) for prefix in ("", "base_", "delta_")]
        print(f"  {name:<18} " + " ".join(f"{v:>10.4f}" if isinstance(v, (int, float)) else f"{'-':>10}" for v in row))
    print(f"  report: {store.url}/{keys.artifact_prefix(tag, 'report', manifest.get('attempt'))}report.html")
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
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through run_in_group: the stage dies too
    try:
        return build(args.tag, args.work)
    except QslmError as exc:
        print(f"build: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("build: interrupted; the running stage was stopped. Rerun the same command to continue (training "
              "resumes from its last checkpoint).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
