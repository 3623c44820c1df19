"""The progress event file (jobs/core/progress.py): what the driver and stages write and what readers make of it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from jobs.core import progress


def test_events_round_trip_and_a_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "b.jsonl"
    progress.write(path, "build_start", tag="b", stages=["curate", "train"], pid=os.getpid(), estimates_s={})
    progress.write(path, "stage_start", stage="curate", index=1, of=2)
    with open(path, "a") as f:
        f.write('{"event": "stage_end", "sta')  # a writer killed mid-line
    events = progress.read_events(path)
    assert [e["event"] for e in events] == ["build_start", "stage_start"]
    s = progress.summary(events)
    assert (s["state"], s["stage"], s["index"], s["of"]) == ("running", "curate", 1, 2)


def test_a_build_whose_driver_is_gone_is_stopped_and_one_that_ended_is_finished(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    start = {"event": "build_start", "t": time.time(), "tag": "b", "stages": ["train"], "pid": dead.pid}
    assert progress.summary([start])["state"] == "stopped"
    end = {"event": "build_end", "t": time.time(), "status": "failed-gate", "seconds": 3.0}
    s = progress.summary([start, end])
    assert (s["state"], s["status"], s["elapsed_s"]) == ("finished", "failed-gate", 3.0)


def test_remaining_time_is_the_stage_s_own_estimate_plus_the_last_build_s_later_stages():
    now = time.time()
    events = [{"event": "build_start", "t": now - 50, "tag": "b", "stages": ["curate", "train", "eval"],
               "pid": os.getpid(), "estimates_s": {"curate": 10, "train": 100, "eval": 30}},
              {"event": "stage_start", "t": now - 40, "stage": "train", "index": 2, "of": 3}]
    assert 88 <= progress.summary(events)["remaining_s"] <= 90  # 100 - 40 s of train + 30 s of eval
    events.append({"event": "train_step", "t": now, "step": 5, "steps": 10, "loss": 2.0, "lr": 1e-3,
                   "tokens_per_s": 100.0, "elapsed_s": 40.0, "remaining_s": 40.0})
    s = progress.summary(events)
    assert s["remaining_s"] == 70.0 and s["loss"] == [(5, 2.0)]
    events[0]["estimates_s"] = {}
    assert progress.summary(events)["remaining_s"] is None  # eval's time is unknown: no made-up estimate


def test_a_meter_writes_at_most_one_event_a_second_and_always_the_last(tmp_path, monkeypatch):
    path = tmp_path / "b.jsonl"
    monkeypatch.setenv(progress.ENV, str(path))
    meter = progress.Meter("synthesis", 500)
    for _ in range(500):
        meter.advance()
    events = progress.read_events(path)
    assert 1 <= len(events) <= 2 + int(meter.elapsed() / progress.EVERY_S)
    assert (events[-1]["done"], events[-1]["total"], events[-1]["remaining_s"]) == (500, 500, 0.0)


def test_no_file_is_written_outside_the_build_driver(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    progress.Meter("train_step", 2).advance(2, loss=1.0, lr=0.1, tokens_per_s=1.0)
    assert list(tmp_path.iterdir()) == []


def test_the_log_tail_shows_a_progress_bar_s_latest_redraw(tmp_path):
    events = tmp_path / "b.jsonl"
    progress.log_file(events).write_bytes(b"curate: wrote x\ntrain  10%\rtrain  50%\rtrain 100%\neval: suite\n")
    assert progress.log_tail(events, 3) == ["train 100%", "eval: suite", ""]
