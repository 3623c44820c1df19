"""One optimizer step over accumulated micro-batches, with a loss normalised like one large batch.

The step's loss is (sum of token cross-entropies over all its micro-batches) / (label tokens in the step),
so batch 1 x grad-accum 4 gives the same loss and gradients as batch 4 x grad-accum 1 (a per-micro-batch mean
would weight a short answer's tokens more than a long one's). The logits are only formed for label tokens
(assistant response + end-of-turn), in chunks, so the 151,936-word vocabulary never needs a [tokens, vocab]
tensor for the whole sequence. With `fused_loss` (train.execution) each chunk's gradient with respect to the
hidden states is formed in the forward pass (`LinearCrossEntropy`): the logits are computed once, not again in
backward, since the output layer is frozen.

How a step's examples become forward passes (micro-batch size, packed rows or padded ones) changes speed and
memory only: a packed row keeps attention inside each example (jobs/train/packing.py) and gives each token
the loss it has alone, so packed and padded steps have the same loss and gradients (a CPU test checks it).
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from jobs.core.engine.loading import use_compile_cache
from jobs.train.data import IGNORE, Example, collate, micro_batches, pack
from jobs.train.packing import model_inputs, to_device


@dataclass(frozen=True)
class Layout:
    """How one step's examples go through the model (train.execution): never what is learned."""

    micro_batch_size: int  # examples per forward pass
    packed: bool  # one row of the examples end to end (True) or right-padded rows (False)
    pad_id: int
    loss_chunk_tokens: int  # label tokens per cross-entropy chunk; 0 = all at once
    fused_loss: bool = True  # each chunk's logits formed once (LinearCrossEntropy), not again in backward
    compiled_loss: bool = False  # the fused loss's passes over each chunk's logits compiled into one (with compile)

    def batches(self, examples: list[Example]) -> list[dict]:
        groups = micro_batches(examples, self.micro_batch_size)
        return [with_loss_positions(pack(g) if self.packed else collate(g, self.pad_id)) for g in groups]


def with_loss_positions(batch: dict) -> dict:
    """Add where the loss is taken, found on the host: `loss_at`, the flat positions (row * width + t) whose next
    token is a label, and `targets`, those labels. On the GPU a boolean mask would wait for the forward pass
    (its nonzero count decides a shape) before the loss could be launched."""
    labels = batch["labels"]
    keep = labels[:, 1:] != IGNORE  # position t predicts token t+1
    rows, cols = keep.nonzero(as_tuple=True)
    return {**batch, "loss_at": rows * labels.shape[1] + cols, "targets": labels[:, 1:][keep]}


def _chunk_ce(lm_head, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum of cross-entropy as log-sum-exp less the target's logit: F.cross_entropy's NLL reduction has no
    deterministic CUDA kernel (train.execution.deterministic would refuse it), these ops have."""
    logits = lm_head(hidden).float()
    return (torch.logsumexp(logits, dim=-1) - logits.gather(1, targets[:, None]).squeeze(1)).sum()


class LinearCrossEntropy(torch.autograd.Function):
    """Sum of cross-entropy of the logits `hidden @ weight.T` (float32) against `targets`, in chunks of `chunk`
    rows, for a frozen weight. The gradient with respect to `hidden` is formed chunk by chunk in forward
    (softmax - one-hot, times the weight), so each chunk's logits exist once and are freed at once; backward
    scales it. Against recomputing the chunk in backward (checkpointing) it saves one [chunk x vocab] matmul and
    its float32 passes per chunk, and keeps one [tokens x hidden] gradient instead."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int,
                compiled: bool = False):
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grads = []
        ce_and_grad = _compiled_ce_and_grad() if compiled else _ce_and_grad
        for i in range(0, targets.numel(), chunk):
            t = targets[i:i + chunk]
            logits = F.linear(hidden[i:i + chunk], weight)  # autocast gives the compute dtype's matmul
            ce, probs = ce_and_grad(logits, t)
            total = total + ce
            grads.append(probs.to(weight.dtype) @ weight)
            del logits, probs
        grad = torch.cat(grads) if grads else torch.zeros_like(hidden)
        ctx.save_for_backward(grad)
        ctx.hidden_dtype = hidden.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return (grad.float() * grad_total).to(ctx.hidden_dtype), None, None, None, None


def _ce_and_grad(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk's sum of cross-entropy and its gradient with respect to the logits (softmax less one-hot), in
    float32, in place: one [chunk x vocab] float32 tensor at a time (1.2 GB at 2,048 tokens of Qwen2.5's vocabulary)."""
    logits = logits.float()
    lse = torch.logsumexp(logits, dim=-1)
    ce = (lse - logits.gather(1, targets[:, None]).squeeze(1)).sum()
    probs = logits.sub_(lse[:, None]).exp_()  # in place: softmax over the vocabulary
    probs[torch.arange(targets.numel(), device=targets.device), targets] -= 1  # d(sum of CE)/d logits
    return ce, probs


def _ce_and_grad_fusable(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`_ce_and_grad` written for the compiler: the one-hot as a comparison, so the softmax, the one-hot and the
    cast back to the logits' dtype fuse into one pass that writes the gradient once; the logits are read in float32
    inside it and never stored so. Eager, it would hold several float32 copies: `_ce_and_grad` is that path."""
    x = logits.float()
    lse = torch.logsumexp(x, dim=-1, keepdim=True)
    ce = (lse.squeeze(1) - x.gather(1, targets[:, None]).squeeze(1)).sum()
    one_hot = torch.arange(x.shape[1], device=x.device)[None, :] == targets[:, None]
    return ce, ((x - lse).exp() - one_hot.float()).to(logits.dtype)


@functools.cache
def _compiled_ce_and_grad():
    use_compile_cache()
    return torch.compile(_ce_and_grad_fusable, dynamic=True)  # dynamic: the last chunk of a step is shorter


def fusable(lm_head) -> bool:
    """The fused loss needs a plain frozen output layer without bias (LoRA on lm_head would be bypassed)."""
    return type(lm_head) is torch.nn.Linear and lm_head.bias is None and not lm_head.weight.requires_grad


def micro_batch_loss_sum(model, batch: dict, chunk_tokens: int, fused: bool = True,
                         compiled: bool = False) -> torch.Tensor:
    """Sum of next-token cross-entropy over the label tokens of one micro-batch (float32 scalar)."""
    base = model.get_base_model()
    hidden = base.model(**model_inputs(batch, base.config)).last_hidden_state
    hidden, targets = hidden.flatten(0, 1).index_select(0, batch["loss_at"]), batch["targets"]
    chunk = chunk_tokens if chunk_tokens > 0 else max(1, targets.numel())
    if fused and fusable(base.lm_head):
        return LinearCrossEntropy.apply(hidden, base.lm_head.weight, targets, chunk, compiled)
    total = hidden.new_zeros((), dtype=torch.float32)
    for i in range(0, targets.numel(), chunk):
        # Recomputed in backward: only one chunk's logits [chunk, vocab] is alive at a time.
        total = total + checkpoint(_chunk_ce, base.lm_head, hidden[i:i + chunk], targets[i:i + chunk],
                                   use_reentrant=False)
    return total


def accumulate(model, examples: list[Example], layout: Layout, device: torch.device, dtype: torch.dtype,
               scaler=None) -> tuple[torch.Tensor, int, int]:
    """Forward + backward over one step's examples; grads accumulate in the LoRA parameters.

    Returns (mean loss per label token, a float32 scalar on the device: reading it waits for the GPU, so the loop
    reads it once per step; label tokens; input tokens: real ones, padding never counted)."""
    n_labels = sum(e.label_tokens for e in examples)
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext())
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)
    for batch in layout.batches(examples):
        batch = to_device(batch, device)
        with autocast:
            part = micro_batch_loss_sum(model, batch, layout.loss_chunk_tokens, layout.fused_loss,
                                        layout.compiled_loss)
        loss = part / max(n_labels, 1)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        loss_sum += part.detach()
    return loss_sum / max(n_labels, 1), n_labels, sum(len(e.input_ids) for e in examples)


def optimizer_step(params: list[torch.Tensor], optimizer, scheduler, scaler, max_grad_norm: float) -> torch.Tensor:
    """Clip, step, advance the schedule, clear grads; returns the gradient norm before clipping (on the device).
    Nothing here waits for the GPU: the fused AdamW takes the scaler's overflow flag on the device."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else float("inf"))
    if scaler is not None:
        scaler.step(optimizer)  # skipped (and the scale lowered) when fp16 gradients overflowed
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return norm


class Mark:
    """A point in the step stream: a CUDA event on a GPU (recorded behind the queued work, timed by the GPU's own
    clock, nothing waits), the host clock on a CPU (where every operation has finished when it returns)."""

    def __init__(self, device: torch.device):
        self.event, self.t = None, time.perf_counter()
        if device.type == "cuda":
            self.event = torch.cuda.Event(enable_timing=True)
            self.event.record()

    def wait(self) -> None:
        """Until the GPU has reached this mark (nothing to wait for on a CPU)."""
        if self.event is not None:
            self.event.synchronize()

    def seconds_since(self, earlier: "Mark") -> float:
        """Seconds from `earlier` to this mark; on a GPU, waits until the GPU has reached this mark."""
        self.wait()
        return self.t - earlier.t if self.event is None else earlier.event.elapsed_time(self.event) / 1000


class StepRead:
    """One step's loss and gradient norm on their way to the host: on a GPU copied into pinned memory behind the
    step's work, with a Mark after the copy. The loop reads step N after queueing step N+1, so the GPU goes
    straight on to the next step while the host waits, logs and packs; reading right away would leave it idle
    from the end of each step until the host had built and launched the next one."""

    def __init__(self, loss: torch.Tensor, grad_norm: torch.Tensor, device: torch.device):
        values = torch.stack([loss.float(), grad_norm.float()])
        if device.type == "cuda":
            self.host = torch.empty(2, dtype=torch.float32, pin_memory=True)
            self.host.copy_(values, non_blocking=True)
        else:
            self.host = values
        self.mark = Mark(device)

    def values(self) -> tuple[float, float]:
        """(loss, gradient norm); waits for the step (and only that step) to finish."""
        self.mark.wait()
        loss, grad_norm = self.host.tolist()
        return loss, grad_norm


def make_scaler(device: torch.device, dtype: torch.dtype):
    """fp16 gradients underflow without loss scaling (what Trainer's fp16=True does): a GradScaler for float16
    compute on a GPU; bf16/fp32 need none (None)."""
    return torch.amp.GradScaler("cuda") if device.type == "cuda" and dtype == torch.float16 else None


def make_optimizer(params: list[torch.Tensor], spec, device: torch.device, total_steps: int):
    """AdamW and the spec's learning-rate schedule (transformers' formulas, stepped once per optimizer step)."""
    from transformers import get_scheduler

    t = spec.train
    optimizer = torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay,
                                  fused=device.type == "cuda")  # fused: one kernel for all LoRA tensors
    name = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}[t.lr_scheduler]
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=t.warmup_steps, num_training_steps=total_steps)
    return optimizer, scheduler
