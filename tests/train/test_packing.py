"""Packed rows train exactly what padded rows train (tiny model, real 4-bit NF4, float32, CPU, checkpointing on)."""

from __future__ import annotations

import json

import pytest
import torch

from jobs.train.data import GRID_WIDTH_STEP, IGNORE, pack, tokenize
from jobs.train.loop import Layout, accumulate
from jobs.train.model import load_model
from tests.train.conftest import conversations, perturb_lora_b, take_grads, with_train

pytestmark = pytest.mark.slow


def test_a_packed_row_restarts_positions_and_never_labels_across_examples(tokenizer):
    rows = [(r["id"], r["messages"]) for r in conversations(3, answer_words=(2, 40))]
    examples = tokenize(rows, tokenizer, 4096, "truncate").examples
    batch = pack(examples)
    lengths = [len(e.input_ids) for e in examples]
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    assert batch["input_ids"].shape == (1, sum(lengths))  # no padding anywhere
    assert [int(batch["position_ids"][0, s]) for s in starts] == [0] * len(examples)
    assert all(int(batch["labels"][0, s]) == IGNORE for s in starts)
    slots = batch["packed"].slots.tolist()
    width = batch["packed"].width  # the longest example, rounded up: few shapes for the attention kernels
    assert width % GRID_WIDTH_STEP == 0 and max(lengths) <= width < max(lengths) + GRID_WIDTH_STEP
    assert len(set(slots)) == len(slots) and max(slots) < len(examples) * width
    assert slots[starts[1]] == width  # the second example starts the grid's second row
    packed_starts = batch["packed"].starts  # flash attention's variable-length spans: each start, then the end
    assert packed_starts.dtype == torch.int32 and packed_starts.tolist() == starts + [sum(lengths)]


@pytest.fixture(scope="module")
def model(smoke_spec, tiny_model):
    spec = with_train(smoke_spec, lora={"dropout": 0.0})  # dropout would draw different masks per layout
    assert spec.train.quantization == "nf4" and spec.train.execution.gradient_checkpointing
    return perturb_lora_b(load_model(spec, tiny_model, torch.device("cpu")))


def test_packed_and_padded_give_the_same_loss_and_gradients(model, tokenizer):
    rows = [(r["id"], r["messages"]) for r in conversations(6, answer_words=(2, 60))]
    examples = tokenize(rows, tokenizer, 4096, "truncate").examples
    assert len({len(e.input_ids) for e in examples}) > 2  # padding would be needed, and attention could leak
    kw = dict(device=torch.device("cpu"), dtype=torch.float32)
    padded = Layout(micro_batch_size=6, packed=False, pad_id=tokenizer.pad_token_id, loss_chunk_tokens=7)
    loss_padded, n_padded, tokens_padded = accumulate(model, examples, padded, **kw)
    loss_padded = float(loss_padded)
    grads_padded = take_grads(model)
    for micro in (6, 4):  # the whole step in one row, and a row of 4 then a row of 2
        packed = Layout(micro_batch_size=micro, packed=True, pad_id=tokenizer.pad_token_id, loss_chunk_tokens=7)
        loss_packed, n_packed, tokens_packed = accumulate(model, examples, packed, **kw)
        loss_packed = float(loss_packed)
        grads_packed = take_grads(model)
        assert (n_packed, tokens_packed) == (n_padded, tokens_padded)
        assert abs(loss_packed - loss_padded) <= 1e-5, (loss_packed, loss_padded)
        assert any(g.abs().sum() > 0 for n, g in grads_packed.items() if "lora_A" in n)
        for name, g in grads_padded.items():
            torch.testing.assert_close(grads_packed[name], g, rtol=0, atol=1e-5)


def test_fifty_steps_packed_follow_the_padded_loss_curve(smoke_spec, tmp_path):
    from jobs.train.run import train
    from tests.train.conftest import write_dataset

    data = write_dataset(tmp_path / "data", conversations(16, answer_words=(2, 60)))
    spec = with_train(smoke_spec, max_steps=50, learning_rate=3e-3, lr_scheduler="constant", lora={"dropout": 0.0},
                      checkpoint_every=100)
    curves = {}
    for packing in (False, True):
        out = tmp_path / f"packing-{packing}"
        train(with_train(spec, execution={"micro_batch_size": 4, "cpu_threads": 1, "packing": packing}), data, out)
        curves[packing] = [m["loss"] for m in json.loads((out / "metrics.json").read_text())]
    assert len(curves[True]) == 50 and curves[False][-1] < curves[False][0] - 0.05  # it learns
    gap = max(abs(a - b) for a, b in zip(curves[True], curves[False]))
    assert gap <= 1e-4, gap  # float32 rounding only; docs/benchmarks.md has the GPU curves with dropout
