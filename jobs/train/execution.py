"""The train.execution knobs that act on the loaded model: they trade memory for speed, never what is learned.

- dequantize_once: bitsandbytes dequantizes each 4-bit weight at every use, three times per step with
  checkpointing (forward, recompute, backward), 196 weights for Qwen2.5-1.5B: 588 dequantize kernels and their
  Python per micro-step. Here each weight is dequantized once, at load, into an nn.Linear of the compute dtype:
  the same values bitsandbytes computes with (above 1,536 tokens per pass it runs exactly
  dequantize + F.linear), so the adapter still trains against the NF4-rounded base. A per-step cache would
  hold the same tensors at the peak (every layer's weights wait from its forward to its backward), so once
  per run costs no more memory than once per step. It costs the dense weights: 2 bytes per parameter in fp16
  or bf16 instead of about 0.56 (+1.75 GiB measured for Qwen2.5-1.5B's linears).
- checkpoint_layers (set by the preflight): with gradient checkpointing, only the first N decoder layers are
  recomputed in backward; the others keep their activations. Reentrant checkpointing replays the RNG and
  restores it after the recompute, so LoRA dropout draws the same masks whichever layers are checkpointed.
"""

from __future__ import annotations

import torch


def decoder_layers(model) -> torch.nn.ModuleList:
    return model.get_base_model().model.layers


def dequantize_once(model) -> list[tuple[str, torch.nn.Module]]:
    """Swap every bitsandbytes 4-bit linear for an nn.Linear with its dequantized weight. Returns the swapped
    4-bit layers by name: keep them to swap back (`requantize`), drop them to free their memory."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit

    swapped = []
    for name, layer in [(n, m) for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]:
        dtype = _dtype(layer)
        dense = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
        weight = dequantize_4bit(layer.weight.data, layer.weight.quant_state).to(dtype)
        dense.weight = torch.nn.Parameter(weight, requires_grad=False)
        if layer.bias is not None:  # bitsandbytes adds the bias in the compute dtype too
            dense.bias = torch.nn.Parameter(layer.bias.data.to(dtype), requires_grad=False)
        _put(model, name, dense)
        swapped.append((name, layer))
    return swapped


def requantize(model, swapped: list[tuple[str, torch.nn.Module]]) -> None:
    for name, layer in swapped:
        _put(model, name, layer)


def _put(model, name: str, layer: torch.nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, layer)


def extra_bytes(swapped: list[tuple[str, torch.nn.Module]]) -> int:
    """Memory the dense copies take beyond the 4-bit weights they replace (bytes)."""
    dense = sum(layer.in_features * layer.out_features * _dtype(layer).itemsize for _, layer in swapped)
    return dense - sum(layer.weight.data.nbytes + layer.weight.quant_state.absmax.nbytes for _, layer in swapped)


def _dtype(layer) -> torch.dtype:
    """The dtype bitsandbytes computes a 4-bit layer in."""
    return layer.compute_dtype or layer.weight.quant_state.dtype


def set_checkpoint_layers(model, n: int) -> None:
    """Checkpoint the first n decoder layers; the model must have had checkpointing enabled at load."""
    for i, layer in enumerate(decoder_layers(model)):
        layer.gradient_checkpointing = i < n


def apply(model, spec) -> dict:
    """Apply the load-time knobs to a model from jobs.train.model.load_model; returns what was done.
    checkpoint_layers: fit is applied by the preflight, which measures what fits. The spec loader has checked
    that the knobs apply (dequantize_once with an NF4 base, fit with checkpointing)."""
    if not spec.train.execution.dequantize_once:
        return {}
    swapped = dequantize_once(model)  # the 4-bit layers are dropped here: their memory is freed
    return {"dequantized_gib_added": round(extra_bytes(swapped) / 2 ** 30, 3)}
