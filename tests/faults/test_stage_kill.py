"""kill -9 at random points of train, eval and the local build driver (the smoke build, tiny model, CPU).

A killed training run, run again, resumes to the adapter an uninterrupted run makes. A stage killed under the
build driver fails the build with `<stage> failed`; the driver killed kills its stage and the stage's children
with it (nothing keeps writing into the work folder); the same `make build` then completes, and the committed
build re-hashes clean.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from jobs.core.store import keys
from jobs.core.store.registry import verify_build
from jobs.core.store.backends import open_store
from jobs.core.spec.suite import load_suite
from tests.conftest import REPO, wait_for
from tests.faults.harness import FIGURES, fault_env
from tests.train.conftest import conversations, with_train, write_dataset

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds stage processes through /proc")


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is `pid`."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out.append((int(stat.parent.name), (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except (OSError, IndexError, ValueError):
            continue
    return out


def running(needle: str) -> list[int]:
    """Live (not zombie) processes whose command line holds `needle`."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle.encode() in cmdline.read_bytes() and \
                    (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return [p for p in pids if p != os.getpid()]


def test_a_killed_training_run_resumes_to_the_same_adapter(smoke_spec, tmp_path, rng):
    spec = with_train(smoke_spec, max_steps=8, checkpoint_every=2, warmup_steps=2)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.to_json())
    data = write_dataset(tmp_path / "data", conversations(12, answer_words=(5, 20)))
    env = fault_env(str(tmp_path / "store"))

    def command(out):
        return [sys.executable, "-m", "jobs.train", "--spec", str(spec_file), "--dataset", str(data), "--out", str(out)]
    started = time.monotonic()
    assert subprocess.run(command(tmp_path / "straight"), cwd=REPO, env=env, capture_output=True).returncode == 0
    span = time.monotonic() - started
    proc = subprocess.Popen(command(tmp_path / "killed"), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.3, 1.0) * span)  # from start-up to the last steps
    proc.kill()
    FIGURES["train processes killed (kill -9)"] += proc.wait() == -signal.SIGKILL
    done = subprocess.run(command(tmp_path / "killed"), cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    resumed = load_file(str(tmp_path / "killed" / "adapter_model.safetensors"))
    straight = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert abs(resumed[key] - straight[key]).max() <= 1e-6, key


def _stage_running(driver: subprocess.Popen, stages: tuple[str, ...]):
    def find():
        return next((pid for pid, cmd in children(driver.pid) for s in stages if f"-m jobs.{s} " in cmd), None)
    return find


def test_a_build_killed_anywhere_reruns_to_a_clean_build(tmp_path, rng, committed):
    store_url, work = str(tmp_path / "store"), tmp_path / "work"
    env = fault_env(store_url)
    store = open_store(store_url)
    committed(store)
    cmd = [sys.executable, "-m", "workflows.build", "--tag", "smoke", "--work", str(work)]

    # 1. kill -9 the running stage itself (train or eval, at a random moment in it): the build fails, naming it
    stage = rng.choice(("train", "eval"))
    driver = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(_stage_running(driver, (stage,)), 300), f"{stage} never started"
    time.sleep(rng.uniform(0, 4))
    any_stage = _stage_running(driver, ("curate", "train", "eval", "core.publish"))
    assert wait_for(any_stage, 60)  # the stage that runs now (the chosen one may have just ended)
    victim = any_stage()
    victim_stage = next(cmd for pid, cmd in children(driver.pid) if pid == victim).split("-m jobs.")[1].split()[0]
    os.kill(victim, signal.SIGKILL)
    FIGURES[f"build stages killed (kill -9): {victim_stage}"] += 1
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 2 and f"build: error: {victim_stage} failed" in err and "Traceback" not in err, err
    assert not store.exists(keys.manifest_key("smoke"))

    # 2. kill -9 the driver while a stage runs: the stage and its children die with it
    stage = rng.choice(("train", "eval"))
    driver = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(_stage_running(driver, (stage,)), 300), f"{stage} never started"
    time.sleep(rng.uniform(0, 4))
    driver.kill()
    driver.wait()
    FIGURES["build drivers killed (kill -9) during a stage"] += 1
    assert wait_for(lambda: not running(str(work)), 60), f"stage processes outlived the driver: {running(str(work))}"

    # 3. the same command completes, and prints the suite size before answering it
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"eval: suite core: {len(load_suite(REPO / 'data/eval/core.yaml').questions)} questions" in done.stdout
    assert verify_build(store, "smoke").damaged == []
