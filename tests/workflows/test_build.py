"""The spine's end-to-end check: `make build VERSION=smoke` on CPU, offline, into a fresh store."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.core import progress
from jobs.core.store import keys
from jobs.core.store.registry import read_artifact_file, verify_build
from jobs.core.store.backends import open_store
from tests.conftest import REPO, wait_for


def run_build(tag, env):
    return subprocess.run([sys.executable, "-m", "workflows.build", "--tag", tag, "--work", env["QSLM_WORK"]],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture
def build_env(tmp_path):
    env = dict(os.environ, QSLM_STORE=str(tmp_path / "store"), QSLM_WORK=str(tmp_path / "work"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


@pytest.mark.parametrize("tag, expected", [("../x", "not a valid build tag"), ("nope", "no build spec for tag 'nope'")])
def test_bad_tags_fail_with_one_clear_error(build_env, tag, expected):
    r = run_build(tag, build_env)
    assert r.returncode == 2 and expected in r.stderr and "smoke" in r.stderr
    assert "Traceback" not in r.stderr


def test_unavailable_base_model_fails_before_any_stage(build_env, tmp_path):
    env = dict(build_env, HF_HOME=str(tmp_path / "hf"))
    r = run_build("v1", env)
    assert r.returncode == 2 and "QSLM_BASE_MODEL" in r.stderr and "VERSION=smoke" in r.stderr
    assert "==> stage" not in r.stdout
    assert not Path(env["QSLM_STORE"]).exists() or not open_store(env["QSLM_STORE"]).list("builds/")


@pytest.mark.slow
def test_smoke_build_writes_a_complete_immutable_tag(build_env):
    r = run_build("smoke", build_env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "==> stage 3 of 5: train" in r.stdout and "synthesize: writer replies:" in r.stderr
    events = progress.read_events(progress.event_file(Path(build_env["QSLM_WORK"]), "smoke"))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "build_start" and kinds.count("stage_end") == 5 and "synthesis" in kinds
    assert events[-1] == {**events[-1], "event": "build_end", "status": "passed"}
    steps = [e for e in events if e["event"] == "train_step"]
    assert steps[-1]["step"] == steps[-1]["steps"] == 12 and steps[-1]["tokens_per_s"] > 0
    assert "train: wrote" in "\n".join(progress.log_tail(progress.event_file(Path(build_env["QSLM_WORK"]), "smoke")))
    store = open_store(build_env["QSLM_STORE"])
    m = json.loads(store.get_bytes(keys.manifest_key("smoke")))
    assert m["status"] == "passed" and m["tag"] == "smoke"
    assert len(m["git"]["commit"]) == 40 and isinstance(m["git"]["dirty"], bool)
    assert m["sources"] and all(len(s["sha256"]) == 64 for s in m["sources"])
    assert m["spec"]["train"]["lora"]["r"] == 16 and m["dataset_sha256"]
    assert set(m["timings_s"]) == {"curate", "synthesize", "train", "eval", "publish"}
    assert {"torch", "transformers", "peft"} <= set(m["versions"]["train"])
    assert "concept_recall" in m["metrics"] and "similarity" in m["metrics"]
    assert all(m["artifacts"][name] for name in keys.ARTIFACTS)
    assert verify_build(store, "smoke").damaged == []  # every listed file is there, with its sha256
    adapter = json.loads(read_artifact_file(store, "smoke", "adapter", "adapter_config.json"))
    assert adapter["r"] == 16 and adapter["lora_alpha"] == 32
    assert set(adapter["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    listed = {name: {f["path"] for f in m["artifacts"][name]} for name in keys.ARTIFACTS}
    assert "adapter_model.safetensors" in listed["adapter"] and "train.parquet" in listed["dataset"]
    assert "report.html" in listed["report"]
    assert {s["path"] for s in m["sources"]} == {f["path"] for f in json.loads(read_artifact_file(
        store, "smoke", "dataset", "curate-info.json"))["sources"]}  # only what curate read

    before = {k: store.get_bytes(k) for k in store.list("")}
    again = run_build("smoke", build_env)
    assert again.returncode == 2 and "already complete" in again.stderr and "immutable" in again.stderr
    assert "==> stage" not in again.stdout
    assert {k: store.get_bytes(k) for k in store.list("")} == before


# ---------------------------------------------------------------- a stage never outlives the driver

STAGE = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # the stage's own child
open(sys.argv[1], "w").write(f"{os.getpid()} {child.pid}")
time.sleep(600)
"""
DRIVER = "import sys; from workflows.build import run_in_group; sys.exit(run_in_group(sys.argv[1:]))"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or between the open and the read
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait() is missing


def start_driver(tmp_path):
    pids = tmp_path / "pids"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, sys.executable, "-c", STAGE, str(pids)], cwd=REPO)
    assert wait_for(lambda: pids.is_file() and len(pids.read_text().split()) == 2), "the stage did not start"
    return driver, [int(p) for p in pids.read_text().split()]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_the_stage_and_its_children_die_with_the_driver(tmp_path, how):
    driver, pids = start_driver(tmp_path)
    assert all(alive(p) for p in pids)
    driver.send_signal(how)
    driver.wait()
    # Each wait is a bound, not a timing claim: the processes die within milliseconds of the driver.
    assert wait_for(lambda: not any(alive(p) for p in pids)), f"orphaned stage processes: {pids}"
