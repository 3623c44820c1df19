"""Attention for packed rows: several examples end to end in one row, each attending only to itself.

A packed micro-batch (jobs/train/data.py `pack`) is one row of all its examples with no padding, so the
linears, norms, MLP and loss (about 98 % of the FLOPs) see real tokens only. What transformers would do with
it is not enough: with `sdpa` and position ids that restart per example, transformers 5.17 to 5.23
(`masking_utils.find_packed_sequence_indices`) builds a dense [tokens x tokens] block-diagonal mask, which
sdpa cannot send to its flash kernel, costs tokens^2 memory (441 MB for a row of 21,000 tokens) and a host
sync per forward. Here instead:
- on a GPU with flash attention (Ampere or newer, float16 or bfloat16, as the RTX A2000 and the H100 are), the
  row goes to flash attention's variable-length kernel as it is: each example's start in the row
  (`Packed.starts`) bounds its attention, causal inside it, and nothing is padded or copied;
- elsewhere (the CPU, older cards, float32), each layer's q, k, v are scattered into an [examples x longest]
  grid, sdpa runs causally on it (pads sit after each example's tokens, so a causal mask already keeps them
  out of every real token's view), and the output is gathered back into the row. The grid's width is rounded
  up to a multiple of data.GRID_WIDTH_STEP tokens so the attention kernels meet few shapes.
On the H100 at 32 examples per pass (19,430 tokens, a grid 1,024 wide), one layer's attention forward and
backward took 2.11 ms through the grid (compiled; sdpa chose cuDNN) and 1.32 ms through the variable-length
kernel, outputs 0.001 apart in float16; the whole step gained 1.6 % (cuDNN's forward is faster than flash's,
the copies and padded queries are gone): docs/benchmarks.md, training at 32 examples per step.

The function is registered with transformers' AttentionInterface under NAME; a call without a packed
layout (the padded path) is exactly transformers' own sdpa attention.
"""

from __future__ import annotations

from functools import partial

import torch

from jobs.train.data import Packed

NAME = "qslm_packed"
FLASH_DTYPES = (torch.float16, torch.bfloat16)  # flash attention's; float32 takes the grid


def _to_rows(x: torch.Tensor, packed: Packed) -> torch.Tensor:
    """[1, heads, tokens, dim] of the packed row -> [rows, heads, width, dim], zeros after each example."""
    flat = x[0].transpose(0, 1)  # [tokens, heads, dim]
    grid = flat.new_zeros(packed.rows * packed.width, *flat.shape[1:]).index_copy(0, packed.slots, flat)
    return grid.view(packed.rows, packed.width, *flat.shape[1:]).transpose(1, 2)


def _varlen(query, key, value, packed: Packed, scale: float | None) -> torch.Tensor:
    """Flash attention over the packed row, each example causal inside its own span: [1, tokens, heads, dim]."""
    q, k, v = (x[0].transpose(0, 1).contiguous() for x in (query, key, value))  # [tokens, heads, dim]
    # The grid's width bounds every example's length; flash sizes its work by it and stops at each example's end.
    out = torch.ops.aten._flash_attention_forward(q, k, v, packed.starts, packed.starts, packed.width, packed.width,
                                                  0.0, True, False, scale=scale)[0]
    return out.unsqueeze(0)


def attention(module, query, key, value, attention_mask, packed: Packed | None = None, varlen: bool = False,
              **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if packed is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if (varlen and query.is_cuda and query.dtype in FLASH_DTYPES and not kwargs.get("dropout")
            and kwargs.get("sliding_window") is None):
        return _varlen(query, key, value, packed, kwargs.get("scaling")), None
    out, _ = sdpa_attention_forward(module, _to_rows(query, packed), _to_rows(key, packed),
                                    _to_rows(value, packed), None, is_causal=True, **kwargs)
    # out: [rows, width, heads, dim] -> the row's own order, [1, tokens, heads, dim]
    return out.reshape(-1, *out.shape[2:]).index_select(0, packed.slots).unsqueeze(0), None


def flash_varlen_available(device: torch.device) -> bool:
    """Whether this device runs flash attention's variable-length kernel: a CUDA card of compute capability 8.0
    or more (Ampere: the RTX A2000 is 8.6) with torch's flash kernels built in."""
    return (device.type == "cuda" and torch.backends.cuda.is_flash_attention_available()
            and torch.cuda.get_device_capability(device) >= (8, 0))


def use_packed_attention(model) -> None:
    """Route a transformers model's attention through `attention` (padded batches are unaffected), with flash
    attention's variable-length kernel where the model's device has it."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(NAME, partial(attention, varlen=flash_varlen_available(model.device)))
    AttentionMaskInterface.register(NAME, sdpa_mask)  # padded batches get sdpa's own causal + padding mask
    model.set_attn_implementation(NAME)
    if model.config._attn_implementation != NAME:  # transformers only warns when a model cannot switch
        raise RuntimeError(f"{type(model).__name__} kept attention {model.config._attn_implementation!r}: packed "
                           f"rows would attend across examples")


def model_inputs(batch: dict, config) -> dict:
    """Keyword arguments of the base model's forward for a collated (padded) or packed micro-batch."""
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "loss_at", "targets")}
    if "packed" in inputs:
        # A prepared mask per layer type: transformers then builds none (`packed` keeps attention per example).
        inputs["attention_mask"] = {layer_type: None for layer_type in set(config.layer_types)}
    return inputs


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on the device. To a GPU through pinned memory without waiting: a plain copy from
    pageable memory waits for the GPU to finish all work queued before it."""
    def move(t: torch.Tensor) -> torch.Tensor:
        return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)

    return {k: (v._replace(slots=move(v.slots), starts=move(v.starts)) if isinstance(v, Packed) else move(v))
            for k, v in batch.items()}
