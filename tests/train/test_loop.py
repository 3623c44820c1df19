"""The loss: batch 1 x grad-accum 4 equals batch 4 x grad-accum 1 (real 4-bit NF4 tiny model on CPU)."""

from __future__ import annotations

import pytest
import torch

from jobs.train.data import tokenize
from jobs.train.loop import Layout, accumulate
from jobs.train.model import load_model
from tests.train.conftest import conversations, perturb_lora_b, take_grads, with_train

pytestmark = pytest.mark.slow


def test_grad_accumulation_equals_the_larger_batch(smoke_spec, tiny_model, tokenizer):
    spec = with_train(smoke_spec, lora={"dropout": 0.0})  # dropout would draw different masks per layout
    model = perturb_lora_b(load_model(spec, tiny_model, torch.device("cpu")))
    rows = [(r["id"], r["messages"]) for r in conversations(4, answer_words=(2, 40))]
    examples = tokenize(rows, tokenizer, 4096, "truncate").examples
    assert len({e.label_tokens for e in examples}) > 1  # unequal lengths: a per-micro-batch mean would differ
    kw = dict(device=torch.device("cpu"), dtype=torch.float32)

    def layout(micro: int) -> Layout:  # padded rows: the packed ones are checked against them in test_packing.py
        return Layout(micro_batch_size=micro, packed=False, pad_id=tokenizer.pad_token_id, loss_chunk_tokens=7)

    loss_ga, n_ga, _ = accumulate(model, examples, layout(1), **kw)
    loss_ga = float(loss_ga)  # a device scalar: the loop reads it once per step
    grads_ga = take_grads(model)
    loss_big, n_big, _ = accumulate(model, examples, layout(4), **kw)
    loss_big = float(loss_big)
    grads_big = take_grads(model)
    assert n_ga == n_big == sum(e.label_tokens for e in examples)
    assert loss_ga == pytest.approx(loss_big, rel=1e-5)
    assert any(g.abs().sum() > 0 for n, g in grads_ga.items() if "lora_A" in n)
    for name in grads_ga:
        torch.testing.assert_close(grads_ga[name], grads_big[name], rtol=1e-4, atol=1e-6)
    # the mean of per-micro-batch means (what a naive loop reports) is not the same number
    naive = sum(float(accumulate(model, [e], layout(1), **kw)[0]) for e in examples) / len(examples)
    assert naive != pytest.approx(loss_big, rel=1e-3)


def test_fused_loss_equals_the_recomputed_chunks(smoke_spec, tiny_model, tokenizer):
    """fused_loss (the gradient taken in forward, LinearCrossEntropy) against checkpointed chunks recomputed in
    backward: the same loss and LoRA gradients in float32, chunk sizes that do and do not divide the labels."""
    spec = with_train(smoke_spec, lora={"dropout": 0.0})
    model = perturb_lora_b(load_model(spec, tiny_model, torch.device("cpu")))
    rows = [(r["id"], r["messages"]) for r in conversations(4, answer_words=(2, 40))]
    examples = tokenize(rows, tokenizer, 4096, "truncate").examples
    kw = dict(device=torch.device("cpu"), dtype=torch.float32)

    def run(fused: bool, chunk: int, compiled: bool = False):
        layout = Layout(micro_batch_size=2, packed=True, pad_id=tokenizer.pad_token_id, loss_chunk_tokens=chunk,
                        fused_loss=fused, compiled_loss=compiled)
        loss, n, _ = accumulate(model, examples, layout, **kw)
        return float(loss), n, take_grads(model)

    loss_ref, n_ref, grads_ref = run(False, 7)
    assert any(g.abs().sum() > 0 for n, g in grads_ref.items() if "lora_A" in n)
    # the compiled chunk (train.execution.compile) over chunks of two lengths: 7 and the last, shorter one
    for chunk, compiled in ((7, False), (0, False), (4096, False), (7, True)):
        loss, n, grads = run(True, chunk, compiled)
        assert n == n_ref and loss == pytest.approx(loss_ref, rel=1e-5)
        for name in grads_ref:
            torch.testing.assert_close(grads[name], grads_ref[name], rtol=1e-5, atol=1e-7)


def test_recomputed_chunk_loss_equals_cross_entropy():
    """The unfused path's chunk loss (log-sum-exp less the target's logit, ops with deterministic CUDA kernels)
    is F.cross_entropy's sum, value and gradient, to float32 rounding."""
    import torch.nn.functional as F

    from jobs.train.loop import _chunk_ce

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(9, 16, requires_grad=True)
    targets = torch.randint(0, 50, (9,))
    ours = _chunk_ce(head, hidden, targets)
    (grad_ours,) = torch.autograd.grad(ours, hidden)
    ref = F.cross_entropy(head(hidden), targets, reduction="sum")
    (grad_ref,) = torch.autograd.grad(ref, hidden)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-5, atol=1e-6)
