"""SIGKILL a real training process after a checkpoint is written, rerun it: same adapter as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from jobs.train.run import train
from tests.conftest import REPO, wait_for
from tests.train.conftest import conversations, with_train, write_dataset

pytestmark = pytest.mark.slow


def _command(spec_file, data, out):
    return [sys.executable, "-m", "jobs.train", "--spec", str(spec_file), "--dataset", str(data), "--out", str(out)]


def test_killed_and_restarted_equals_uninterrupted(smoke_spec, tmp_path):
    # 16 steps with dropout on (so the RNG state must be restored too), a checkpoint every 2 steps
    spec = with_train(smoke_spec, max_steps=16, checkpoint_every=2, lr_scheduler="cosine", warmup_steps=2)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.to_json())
    data = write_dataset(tmp_path / "data", conversations(12, answer_words=(5, 20)))
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(_command(spec_file, data, out), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: proc.poll() is not None or list((out / "checkpoints").glob("step-*")), 120, poll=0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed; make it longer"
    assert not (out / "train-info.json").exists()
    assert list((out / "checkpoints").glob("step-*"))

    done = subprocess.run(_command(spec_file, data, out), cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stdout, done.stdout
    info = json.loads((out / "train-info.json").read_text())
    assert info["resumed_from"] is not None and info["steps"] == 16

    train(spec, data, tmp_path / "straight")
    resumed = load_file(str(out / "adapter_model.safetensors"))
    straight = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    assert resumed.keys() == straight.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=1e-5, atol=1e-7)
    steps = [m["step"] for m in json.loads((out / "metrics.json").read_text())]
    assert steps == list(range(1, 17))
