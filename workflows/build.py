"""The local build: curate -> [synthesize] -> train -> eval -> publish, each stage run as its own command.

    python -m workflows.build --tag smoke          # what `make build VERSION=smoke` runs

Stages run as subprocesses with exactly the commands the images and the Argo workflow run, in a work folder
(.work/<tag>/); publish then writes the store, manifest last. A tag already complete in the store is refused
before any work starts, and the store is left untouched. Each stage runs in a process group of its own that
dies with the driver, however the driver ends (Ctrl-C, SIGTERM, SIGKILL): no stage outlives it to keep writing
into the work folder a rerun uses.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from jobs.core import progress
from jobs.core.store import keys, lineage
from jobs.core.store.dataset_folder import read_rows
from jobs.core.errors import QslmError
from jobs.core.engine.basemodel import resolve_base_model
from jobs.core.store.provenance import sha256_file, training_fingerprint
from jobs.core.store.registry import fetch_artifact, previous_build, read_manifest, refuse_complete
from jobs.core.spec.metrics import GATE_FAILED, HEADLINE
from jobs.core.repo import REPO_ROOT
from jobs.core.spec.load import spec_by_tag
from jobs.core.store.backends import open_store
from workflows.stages import STAGES
from jobs.core.spec.suite import load_suite
from jobs.core.spec.suite_check import check_paragraphs


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


def _tee(pipe, terminal, log) -> threading.Thread:
    """Copy a stage's output to the terminal as it comes, and to the build's log (the studio shows its tail)."""
    def copy() -> None:
        while chunk := os.read(pipe.fileno(), 65536):
            terminal.write(chunk)
            terminal.flush()
            log.write(chunk)
            log.flush()
    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


def run_in_group(cmd: list[str], log: Path | None = None, env: dict | None = None) -> int:
    """Run `cmd` in a process group of its own that dies with this process; returns its exit status. With `log`,
    its stdout and stderr also go to that file (appended)."""
    read, write = os.pipe()
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER], stdin=read, process_group=0)
    os.close(read)
    out = subprocess.PIPE if log else None
    tees = []
    try:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, process_group=watcher.pid, preexec_fn=_die_with(os.getpid()),
                                stdout=out, stderr=out, env=env)
        if log:
            sink = open(log, "ab")
            tees = [_tee(proc.stdout, sys.stdout.buffer, sink), _tee(proc.stderr, sys.stderr.buffer, sink)]
        return proc.wait()
    finally:
        os.close(write)  # the watcher wakes and kills what is left of the group: the stage's own children too
        watcher.wait()
        for t in tees:  # the group is dead: its pipes are at end of file
            t.join()


class Stages:
    """Runs the build's stages in order: the terminal's stage line, the progress events, the stages' log."""

    def __init__(self, tag: str, names: list[str], events: Path, estimates: dict):
        self.names, self.events, self.t0 = names, events, time.monotonic()
        self.estimates = {n: estimates[n] for n in names if isinstance(estimates.get(n), (int, float))}
        events.parent.mkdir(parents=True, exist_ok=True)
        events.unlink(missing_ok=True)  # one file per build attempt
        progress.log_file(events).unlink(missing_ok=True)
        progress.write(events, "build_start", tag=tag, stages=names, pid=os.getpid(), estimates_s=self.estimates)
        # the stages' output goes through a pipe: unbuffered, so the terminal and the log see lines as they come
        self.env = {**os.environ, progress.ENV: str(events), "PYTHONUNBUFFERED": "1"}

    def run(self, name: str, args: list[str]) -> int:
        index, of = self.names.index(name) + 1, len(self.names)
        cmd = [sys.executable, "-m", STAGES[name], *args]
        guess = f", the last build's took {progress.clock(self.estimates[name])}" if name in self.estimates else ""
        print(f"\n==> stage {index} of {of}: {name} (build elapsed {progress.clock(time.monotonic() - self.t0)}"
              f"{guess})\n    {' '.join(cmd[1:])}", flush=True)
        progress.write(self.events, "stage_start", stage=name, index=index, of=of)
        started = time.perf_counter()
        rc = run_in_group(cmd, progress.log_file(self.events), self.env)
        seconds = round(time.perf_counter() - started, 1)
        ok = rc == 0 or (name == "eval" and rc == GATE_FAILED)  # a failed gate is a result, not a failure
        progress.write(self.events, "stage_end" if ok else "stage_fail", stage=name, index=index, of=of,
                       seconds=seconds, **({} if rc == 0 else {"rc": rc}))
        print(f"<== stage {index} of {of}: {name}: exit {rc} after {seconds:.1f} s", flush=True)
        return rc

    def end(self, status: str) -> None:
        progress.write(self.events, "build_end", status=status, seconds=round(time.monotonic() - self.t0, 1))


def comparison_lines(spec, prev: str, manifest: dict, dataset: Path) -> str:
    """What the build is compared with and why, and whatever makes that comparison not like for like."""
    why = "named by previous: in the spec" if spec.previous else "the latest build of the same lineage " \
        "(same suite, same base model)"
    lines = [f"comparing against previous build {prev}: {why}"]
    lines += [f"  NOT LIKE FOR LIKE: {d}" for d in lineage.differences(lineage.of_spec(spec),
                                                                      lineage.of_manifest(manifest), prev)]
    info = dataset / "curate-info.json"
    current = json.loads(info.read_text(encoding="utf-8")).get("sources") if info.is_file() else None
    changed = lineage.sources_line(lineage.changed_sources(manifest.get("sources"), current))
    if changed:
        lines.append(f"  {changed}")
    return "\n".join(lines)


def build(tag: str, work_root: Path) -> int:
    spec = spec_by_tag(tag)
    store = open_store()
    store.check()  # a store that cannot be written fails now, not after the stages have run
    refuse_complete(store, tag, BuildError)
    print(f"base model: {resolve_base_model(spec)}", flush=True)  # fail fast, before any stage runs
    work = work_root / tag
    for d in ("curated", "dataset", "report", "previous", "index"):  # the adapter keeps its checkpoints: a rerun resumes
        shutil.rmtree(work / d, ignore_errors=True)
    names = ["curate", *(["synthesize"] if spec.synthesize else []), *(["index"] if spec.retrieval else []), "train",
             "eval", "publish"]
    stages = Stages(tag, names, progress.event_file(work_root, tag), _timings(store, tag))
    try:
        return _run(tag, spec, store, work, stages)
    except BaseException:
        stages.end("failed")
        raise


def _timings(store, tag: str) -> dict:
    """Seconds each stage of the build compared against took (its manifest): the estimate of this one's stages."""
    previous = previous_build(store, tag)
    return (read_manifest(store, previous).get("timings_s") or {}) if previous else {}


def _run(tag: str, spec, store, work: Path, stages: Stages) -> int:
    _stage = stages.run
    dataset, adapter, report, previous, index = (work / d for d in ("dataset", "adapter", "report", "previous",
                                                                    "index"))
    curated = work / "curated" if spec.synthesize else dataset  # with synthesis, train reads synthesize's output
    spec_file = spec.source_file
    if _stage("curate", ["--spec", spec_file, "--out", str(curated)]) != 0:
        raise BuildError("curate failed (see its message above); nothing was published")
    for note in check_paragraphs(load_suite(spec.eval.suite), read_rows(curated / "catalogue.parquet")):
        print(f"note: {note}", flush=True)  # ids that do not exist at all were refused above (SuiteError)
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
    prev = previous_build(store, tag, spec)
    if prev:
        fetch_artifact(store, prev, "report", previous)  # checked against its manifest
        eval_args += ["--previous", str(previous)]
        print(comparison_lines(spec, prev, read_manifest(store, prev), dataset), flush=True)
    else:
        mine = lineage.of_spec(spec)
        print(f"no previous build of this lineage (suite {mine['suite']} {mine['suite_sha256'][:12]}, base "
              f"{mine['base_model']}) in {store.url}: this build is compared with its base model only", flush=True)
    rc = _stage("eval", eval_args)
    if rc not in (0, GATE_FAILED):
        raise BuildError("eval failed (see its message above); nothing was published")
    if _stage("publish", ["--spec", spec_file, "--tag", tag, "--dataset", str(dataset),
                          "--adapter", str(adapter), "--report", str(report), *with_index]) != 0:
        raise BuildError("publish failed (see its message above)")
    manifest = read_manifest(store, tag)
    stages.end(manifest["status"])
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
