"""The model to train: the base checkpoint (4-bit NF4 or unquantized) with a fresh LoRA adapter from the spec.

One code path for the tiny CPU model and Qwen2.5-1.5B on a GPU: only the spec's values differ.
"""

from __future__ import annotations

from pathlib import Path

import torch

from jobs.core.spec import BuildSpec


def pick_device(spec: BuildSpec) -> torch.device:
    want = spec.train.execution.device
    if want == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{spec.source_file}: train.execution.device is 'cuda' but torch sees no GPU "
                           f"(torch {torch.__version__}); use device: auto or cpu")
    if want == "cpu" or (want == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def compute_dtype(spec: BuildSpec) -> torch.dtype:
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[spec.train.compute_dtype]


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.chat_template is None:
        raise ValueError(f"{model_dir}: the tokenizer has no chat template; train needs an Instruct model's "
                         f"tokenizer_config.json with its chat_template")
    return tokenizer


def load_base(spec: BuildSpec, model_dir: Path, device: torch.device | str):
    """The frozen base exactly as spec.train defines it (4-bit NF4 or unquantized, compute dtype). Train and
    eval both load it here, so an adapter is always evaluated against the base it was trained on."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = compute_dtype(spec)
    quant = None
    if spec.train.quantization == "nf4":
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    # Unquantized parts (embeddings, norms) load in the compute dtype; no fp32 upcast of the residual stream
    # (prepare_model_for_kbit_training does that and costs speed for no accuracy gain with RMSNorm in fp32).
    return AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quant, dtype=dtype,
                                                device_map={"": str(device)}, attn_implementation="sdpa")


def load_model(spec: BuildSpec, model_dir: Path, device: torch.device):
    """Base model per spec.train (quantization, compute dtype, checkpointing) wrapped in a new LoRA adapter.

    The seed is set right before the adapter is created, so its initial weights depend on train.seed alone.
    """
    from peft import LoraConfig, get_peft_model

    t = spec.train
    model = load_base(spec, model_dir, device)
    model.config.use_cache = False
    for p in model.parameters():
        p.requires_grad_(False)
    if t.execution.gradient_checkpointing:
        # Reentrant: its first forward runs without autograd and keeps no graph; at batch 1 the v1 training
        # loop peaked at 2.83 GiB reserved, against 4.55 GiB with the non-reentrant kind (H200, docs/bench/train.md).
        # It needs an input that requires grad (the embedding output); the recompute replays the RNG, so
        # LoRA dropout masks are the same in both passes.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
    lora = LoraConfig(r=t.lora.r, lora_alpha=t.lora.alpha, lora_dropout=t.lora.dropout,
                      target_modules=list(t.lora.target_modules), bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(t.seed)
    try:
        model = get_peft_model(model, lora)
    except ValueError as exc:
        raise ValueError(f"{spec.source_file}: train.lora.target_modules {list(t.lora.target_modules)} do not "
                         f"match the base model's layers ({exc})") from exc
    # Recorded in adapter_config.json: the hub id, not this machine's cache path.
    model.peft_config["default"].base_model_name_or_path = spec.base_model.id
    model.peft_config["default"].revision = spec.base_model.revision
    model.train()  # transformers only checkpoints layers in training mode; LoRA dropout is on
    return model
