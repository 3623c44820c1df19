"""A running build's progress: one JSON-lines event file per build, the one format that the terminal's stage line,
the studio's running-build page and any tracker read.

    .work/progress/<tag>.jsonl   events, one JSON object a line, appended (the local build driver and its stages)
    .work/progress/<tag>.log     what the stages printed (stdout and stderr), as the terminal showed it

The local build driver (workflows/build.py) starts the file and passes its path to every stage in
$QSLM_PROGRESS_FILE; a stage run alone, or in the cluster (Argo shows steps there), has no such variable and
writes nothing. Every event has "event" and "t" (unix seconds); the others:

    build_start  tag, stages (names, in order), pid (the driver's: a file whose driver is gone is not running),
                 estimates_s ({stage: seconds} the build compared against took; the estimate of the time left)
    stage_start  stage, index (1-based), of
    stage_end    stage, index, of, seconds
    stage_fail   stage, index, of, seconds, rc
    train_step   step, steps, loss, lr, tokens_per_s, elapsed_s, remaining_s   (at most one a second, and the last)
    synthesis    done, total (writer replies to generate), elapsed_s, remaining_s   (likewise)
    build_end    status (passed | failed-gate | failed), seconds

A line is written with one O_APPEND write, so a reader sees whole lines or none of the last one; a reader skips a
line it cannot parse. No event is taken from a published build: progress is unverified (no manifest yet).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ENV = "QSLM_PROGRESS_FILE"
EVERY_S = 1.0  # a step or reply event at most this often (a 0.2 s step would otherwise write 5 lines a second)
TAIL_BYTES = 64 * 1024  # of the log a reader looks at
MAX_EVENT_BYTES = 16 * 1024 * 1024  # a reader reads at most this much of an event file (a year of steps: ~10 MB)


def progress_dir(work_root: Path) -> Path:
    return Path(work_root) / "progress"


def event_file(work_root: Path, tag: str) -> Path:
    return progress_dir(work_root) / f"{tag}.jsonl"


def log_file(events: Path) -> Path:
    return Path(events).with_suffix(".log")


def write(path: Path | str | None, event: str, **fields) -> None:
    """Append one event to `path` (nothing when there is no path)."""
    if not path:
        return
    line = json.dumps({"event": event, "t": round(time.time(), 3), **fields}, sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def emit(event: str, **fields) -> None:
    """Append one event to this process's build's file ($QSLM_PROGRESS_FILE), if it runs under the build driver."""
    write(os.environ.get(ENV), event, **fields)


def clock(seconds: float | None) -> str:
    """'1:05' (minutes:seconds) or '2:03:04'; '?' when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Meter:
    """Counts units of a stage's work (train steps, writer replies) and reports the rate and the time left: an
    event at most every EVERY_S and always at the last unit, and (when `say` is set) a line on stderr at most every
    `say_every_s` seconds."""

    def __init__(self, event: str, total: int, start: int = 0, say: str = "", say_every_s: float = 10.0):
        self.event, self.total, self.start, self.done = event, total, start, start
        self.say, self.say_every_s = say, say_every_s
        self.t0 = time.monotonic()
        self._emitted = self._said = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def remaining(self) -> float | None:
        counted = self.done - self.start  # units of this run: a resumed run's earlier steps took no time here
        return None if counted <= 0 else self.elapsed() / counted * (self.total - self.done)

    def advance(self, to: int | None = None, **fields) -> None:
        self.done = self.done + 1 if to is None else to
        now, last = time.monotonic(), self.done >= self.total
        if last or now - self._emitted >= EVERY_S:
            self._emitted = now
            emit(self.event, **self._counts(), **fields, elapsed_s=round(self.elapsed(), 1),
                 remaining_s=None if (r := self.remaining()) is None else round(r, 1))
        if self.say and (last or now - self._said >= self.say_every_s):
            self._said = now
            print(f"{self.say}: {self.done} of {self.total} (elapsed {clock(self.elapsed())}, about "
                  f"{clock(self.remaining())} left)", file=sys.stderr, flush=True)

    def _counts(self) -> dict:
        return {"step": self.done, "steps": self.total} if self.event == "train_step" else \
            {"done": self.done, "total": self.total}


def read_events(path: Path) -> list[dict]:
    """The events of one file, in order; a line that is not a whole JSON object (a torn last line) is skipped."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_EVENT_BYTES)
    except FileNotFoundError:
        return []
    events = []
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(e, dict) and isinstance(e.get("event"), str):
            events.append(e)
    return events


def log_tail(events: Path, lines: int = 40) -> list[str]:
    """The last `lines` lines the stages printed (a progress bar's carriage-return redraws: the latest only)."""
    path = log_file(events)
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - TAIL_BYTES))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    return [line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n")][-lines:]


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def summary(events: list[dict]) -> dict:
    """One build's state from its events: what the terminal's line and the studio's page show."""
    s = {"tag": None, "stages": [], "estimates": {}, "remaining_s": None, "stage": None, "index": 0, "of": 0, "state": "unknown", "started": None,
         "elapsed_s": None, "stage_started": None, "train": None, "synthesis": None, "loss": [], "status": None,
         "failed_stage": None}
    for e in events:
        kind = e["event"]
        if kind == "build_start":
            s.update(tag=e.get("tag"), stages=e.get("stages", []), started=e.get("t"), pid=e.get("pid"),
                     state="running", of=len(e.get("stages", [])), estimates=e.get("estimates_s") or {})
        elif kind == "stage_start":
            s.update(stage=e.get("stage"), index=e.get("index", 0), of=e.get("of", s["of"]),
                     stage_started=e.get("t"), train=None if e.get("stage") == "train" else s["train"])
        elif kind == "stage_fail":
            s.update(failed_stage=e.get("stage"))
        elif kind == "train_step":
            s["train"] = e
            if isinstance(e.get("loss"), (int, float)):
                s["loss"].append((e.get("step"), e["loss"]))
        elif kind == "synthesis":
            s["synthesis"] = e
        elif kind == "build_end":
            s.update(state="finished", status=e.get("status"), elapsed_s=e.get("seconds"))
    if s["state"] == "running":
        if not _alive(s.get("pid")):
            s["state"] = "stopped"  # the driver is gone without a build_end: killed
        if s["started"] is not None:
            s["elapsed_s"] = round(time.time() - s["started"], 1)
        s["remaining_s"] = remaining(s) if s["state"] == "running" else None
    return s


def remaining(s: dict) -> float | None:
    """Seconds left: the running stage's own estimate (train's steps, synthesis's replies) or the last build's time
    for it less what it has run, plus the last build's time for each stage after it; None without a basis."""
    estimates, stages = s.get("estimates") or {}, s["stages"]
    if not s["stage"] or s["stage"] not in stages:
        return None
    own = {"train": s["train"], "synthesize": s["synthesis"]}.get(s["stage"])
    if own and own.get("remaining_s") is not None:
        now = own["remaining_s"]
    elif s["stage"] in estimates and s["stage_started"] is not None:
        now = max(0.0, estimates[s["stage"]] - (time.time() - s["stage_started"]))
    else:
        return None
    later = stages[stages.index(s["stage"]) + 1:]
    if any(n not in estimates for n in later):
        return None
    return round(now + sum(estimates[n] for n in later), 1)


def build_files(work_root: Path) -> list[Path]:
    """Every build's event file under the work folder, newest first."""
    folder = progress_dir(work_root)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
