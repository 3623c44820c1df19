"""The execution knobs that act on the model change speed and memory, never the loss or the gradients
(tiny model, real 4-bit NF4, float32, CPU)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from jobs.core.spec.schema import SpecError
from jobs.core.spec.load import load_spec
from jobs.train import execution
from jobs.train.data import tokenize
from jobs.train.loop import Layout
from jobs.train.model import load_model
from tests.train.conftest import (assert_same_step, conversations, loss_and_grads, perturb_lora_b,
                                  with_train)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(smoke_spec, tiny_model):
    return perturb_lora_b(load_model(smoke_spec, tiny_model, torch.device("cpu")))  # dropout on: masks replay


@pytest.fixture(scope="module")
def step(tokenizer):
    rows = [(r["id"], r["messages"]) for r in conversations(4, answer_words=(2, 40))]
    examples = tokenize(rows, tokenizer, 4096, "truncate").examples
    return examples, Layout(micro_batch_size=4, packed=True, pad_id=tokenizer.pad_token_id, loss_chunk_tokens=0)


def test_dequantize_once_computes_with_the_values_bitsandbytes_dequantizes(model, step):
    import bitsandbytes as bnb

    per_use = loss_and_grads(model, *step)
    swapped = execution.dequantize_once(model)
    try:
        assert swapped and not any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
        assert execution.extra_bytes(swapped) > 0  # float32 weights here: 4 bytes each instead of about 0.56
        assert_same_step(per_use, loss_and_grads(model, *step), atol=1e-6)
    finally:
        execution.requantize(model, swapped)
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules()) == len(swapped)


def test_fewer_checkpointed_layers_give_the_same_loss_and_gradients(model, step):
    everything = loss_and_grads(model, *step)
    for n in (1, 0):
        execution.set_checkpoint_layers(model, n)
        assert [layer.gradient_checkpointing for layer in execution.decoder_layers(model)] == [0 < n, False]
        assert_same_step(everything, loss_and_grads(model, *step), atol=1e-6)
    execution.set_checkpoint_layers(model, 2)


def test_knobs_that_cannot_apply_are_refused_when_the_spec_loads(smoke_spec, tmp_path):
    import yaml

    data = yaml.safe_load(Path(smoke_spec.source_file).read_text())
    data["train"].update(quantization="none", execution={"dequantize_once": True, "checkpoint_layers": "fit",
                                                         "gradient_checkpointing": False})
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    message = str(pytest.raises(SpecError, load_spec, bad).value)
    assert "dequantize_once: applies to an nf4 base only" in message
    assert "checkpoint_layers: fit chooses which layers to checkpoint; it needs gradient_checkpointing: true" in message
    data["train"].update(quantization="nf4", execution={"compile": True})
    bad.write_text(yaml.safe_dump(data))
    message = str(pytest.raises(SpecError, load_spec, bad).value)
    assert "compile: bitsandbytes' 4-bit layers are not compiled; with an nf4 base set dequantize_once: true" in message


def test_the_recompute_s_swiglu_gives_the_gradients_of_silu_gate_times_up():
    """The recompute in backward builds silu(gate) * up's graph without computing it (the output's value is never
    read): its backward is the product's own."""
    torch.manual_seed(0)
    gate, up, grad = (torch.randn(5, 7, dtype=torch.float64) for _ in range(3))
    g1, u1 = gate.clone().requires_grad_(), up.clone().requires_grad_()
    (torch.nn.functional.silu(g1) * u1).backward(grad)
    g2, u2 = gate.clone().requires_grad_(), up.clone().requires_grad_()
    out = execution._SwiGLUForBackward.apply(g2, u2)
    assert out.shape == gate.shape and out.requires_grad
    out.backward(grad)
    torch.testing.assert_close(g2.grad, g1.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(u2.grad, u1.grad, rtol=0, atol=1e-12)


def test_the_train_stage_asks_for_expandable_segments_unless_the_user_chose(monkeypatch):
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "")  # restored after the test, whatever the function sets
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF")
    execution.expandable_segments()
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:256")
    execution.expandable_segments()
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:256"
