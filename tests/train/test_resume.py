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

from tests.conftest import REPO, wait_for
from tests.train.conftest import conversations, with_train, write_dataset

pytestmark = pytest.mark.slow


def _command(spec_file, data, out):
    return [sys.executable, "-m", "jobs.train", "--spec", str(spec_file), "--dataset", str(data), "--out", str(out)]


# v2's execution on the CPU: packed micro-batches of 4, dequantized once, compiled layers (dynamic shapes, reentrant
# checkpointing around them, the down projection after them, dropout masks from torch's generator, the fused loss
# compiled). The straight run compiles at step 1's shapes, the resumed one at step 3's: the adapter must not
# depend on where a process started (issue 28).
COMPILED = {"micro_batch_size": 4, "dequantize_once": True, "compile": True}


@pytest.mark.parametrize("execution", [{}, COMPILED], ids=["eager", "compiled"])
def test_killed_and_restarted_equals_uninterrupted(smoke_spec, tmp_path, execution):
    # 16 steps with dropout on (so the RNG state must be restored too), a checkpoint every 2 steps
    assert smoke_spec.train.lora.dropout > 0
    spec = with_train(smoke_spec, max_steps=16, checkpoint_every=2, lr_scheduler="cosine", warmup_steps=2,
                      execution=execution)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.to_json())
    data = write_dataset(tmp_path / "data", conversations(12, answer_words=(5, 20)))
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(_command(spec_file, data, out), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: proc.poll() is not None or list((out / "checkpoints").glob("step-*")), 300, poll=0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed; make it longer"
    assert not (out / "train-info.json").exists()
    assert list((out / "checkpoints").glob("step-*"))

    done = subprocess.run(_command(spec_file, data, out), cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stdout, done.stdout
    info = json.loads((out / "train-info.json").read_text())
    assert info["resumed_from"] is not None and info["steps"] == 16

    # in a process of its own, as the GPU tier's test: compiled graphs of this process's other tests stay out of it
    done = subprocess.run(_command(spec_file, data, tmp_path / "straight"), cwd=REPO, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = load_file(str(out / "adapter_model.safetensors"))
    straight = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    assert resumed.keys() == straight.keys()
    for key in straight:  # byte for byte: the CPU's kernels are reproducible
        assert torch.equal(resumed[key], straight[key]), key
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (out, tmp_path / "straight")]
    assert [m["step"] for m in metrics[0]] == list(range(1, 17))
    assert [m["loss"] for m in metrics[0]] == [m["loss"] for m in metrics[1]]
