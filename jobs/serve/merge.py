"""Merging a build's adapter into a standalone model, and measuring what each merge costs.

Two merges (QLoRA trains the adapter on a 4-bit base, so neither is exactly the model eval scored):
- `dequantized`: the NF4 base the adapter was trained on, dequantized to the compute dtype, plus the adapter:
  the same weights the adapter saw, in a plain (unquantized) checkpoint. Only for builds trained on NF4.
- `original`: the base checkpoint as published (its own dtype: bfloat16 for Qwen2.5), plus the adapter: no
  quantization error in the base, but weights the adapter never met.
Each merge's held-out perplexity is measured against the adapter on its 4-bit base (what eval scored) through
the engine, with the merged folder as the base (QSLM_BASE_MODEL, the documented override), so the model card
can say which to pick.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

from jobs.core.engine.loading import compute_dtype, load_adapter, load_base, load_tokenizer, pick_device
from jobs.core.engine.basemodel import resolve_base_model
from jobs.serve.builds import Build

MERGES = ("dequantized", "original")
HF_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


def merges_for(build: Build) -> tuple[str, ...]:
    return MERGES if build.spec.train.quantization == "nf4" else ("original",)


def merge(build: Build, kind: str, out: Path, device: str = "auto") -> Path:
    """Write `out`: a Hugging Face folder (safetensors, config, tokenizer, generation config) with the adapter
    merged in, loadable by AutoModelForCausalLM.from_pretrained without peft."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    base_dir = resolve_base_model(build.spec)
    dev = pick_device(device)
    if kind == "dequantized":
        model = load_base(build.spec, base_dir, dev).dequantize(dtype=compute_dtype(build.spec))
    else:
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto", device_map={"": str(dev)})
    model = load_adapter(model, build.artifact("adapter")).merge_and_unload()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with torch.no_grad():
        model.save_pretrained(tmp, safe_serialization=True)
    load_tokenizer(base_dir).save_pretrained(tmp)
    if (base_dir / "generation_config.json").is_file():  # the base's stop tokens and sampling defaults
        GenerationConfig.from_pretrained(base_dir).save_pretrained(tmp)
    missing = [f for f in HF_FILES if not (tmp / f).is_file()]
    missing += [] if list(tmp.glob("*.safetensors")) else ["*.safetensors"]
    if missing:
        raise RuntimeError(f"{tmp}: save_pretrained left out {', '.join(missing)}")  # a bug, not a user error
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


@contextlib.contextmanager
def _base_model_env(folder: Path):
    old = os.environ.get("QSLM_BASE_MODEL")
    os.environ["QSLM_BASE_MODEL"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            del os.environ["QSLM_BASE_MODEL"]
        else:
            os.environ["QSLM_BASE_MODEL"] = old


def _perplexity(engine, texts: list[str], adapter: str | None) -> float:
    scored = engine.nll(texts, adapter)
    return math.exp(sum(n for n, _ in scored) / max(sum(t for _, t in scored), 1))


def merged_dtype(folder: Path) -> str:
    config = json.loads((folder / "config.json").read_text())
    return str(config.get("dtype") or config.get("torch_dtype") or "float32")


def perplexities(build: Build, merged: dict[str, Path], texts: list[str], device: str = "auto") -> dict[str, float]:
    """Held-out perplexity (exp of mean next-token NLL, nats) of the adapter on its 4-bit base and of each merge."""
    from jobs.core.engine.generation import Engine, EngineSettings

    settings = EngineSettings(device=device, memory_budget_gib=build.spec.train.memory_budget_gib)
    out = {"adapter": _perplexity(Engine.load(build.spec, {build.tag: build.artifact("adapter")}, settings), texts,
                                  build.tag)}
    for kind, folder in merged.items():
        train = dataclasses.replace(build.spec.train, quantization="none", compute_dtype=merged_dtype(folder))
        with _base_model_env(folder):
            engine = Engine.load(dataclasses.replace(build.spec, train=train), None, settings)
        out[kind] = _perplexity(engine, texts, None)
    return out
