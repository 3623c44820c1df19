"""The model to train: the base checkpoint (4-bit NF4 or unquantized) with a fresh LoRA adapter from the spec.

One code path for the tiny CPU model and Qwen2.5-1.5B on a GPU: only the spec's values differ.
"""

from __future__ import annotations

from pathlib import Path

import torch

from jobs.core.engine.loading import ModelError, load_base
from jobs.core.spec.schema import BuildSpec
from jobs.train.packing import use_packed_attention


def load_model(spec: BuildSpec, model_dir: Path, device: torch.device):
    """Base model per spec.train (quantization, compute dtype, checkpointing) wrapped in a new LoRA adapter.

    The seed is set right before the adapter is created, so its initial weights depend on train.seed alone.
    """
    from peft import LoraConfig, get_peft_model

    t = spec.train
    model = load_base(spec, model_dir, device)
    use_packed_attention(model)  # packed rows keep attention per example; padded rows get plain sdpa
    model.config.use_cache = False
    for p in model.parameters():
        p.requires_grad_(False)
    if t.execution.gradient_checkpointing and not t.execution.compile:  # compiled layers checkpoint themselves
        # Reentrant: its first forward runs without autograd and keeps no graph; at batch 1 the v1 training
        # loop peaked at 2.83 GiB reserved, against 4.55 GiB with the non-reentrant kind (H200, docs/benchmarks.md).
        # It needs an input that requires grad (the embedding output); the recompute replays the RNG, so
        # LoRA dropout masks are the same in both passes.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    if t.execution.gradient_checkpointing or t.execution.compile:
        # Compiled layers need it too: the first layer's input then requires grad like every other layer's, so all
        # share one graph (another compiles for tens of seconds; the extra input gradient is under 1 % of a step).
        model.enable_input_require_grads()
    lora = LoraConfig(r=t.lora.r, lora_alpha=t.lora.alpha, lora_dropout=t.lora.dropout,
                      target_modules=list(t.lora.target_modules), bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(t.seed)
    try:
        model = get_peft_model(model, lora)
    except ValueError as exc:
        raise ModelError(f"{spec.source_file}: train.lora.target_modules {list(t.lora.target_modules)} do not "
                         f"match the base model's layers ({exc})") from exc
    # Recorded in adapter_config.json: the hub id, not this machine's cache path.
    model.peft_config["default"].base_model_name_or_path = spec.base_model.id
    model.peft_config["default"].revision = spec.base_model.revision
    model.train()  # transformers only checkpoints layers in training mode; LoRA dropout is on
    return model
