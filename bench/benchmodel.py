"""A random checkpoint with the exact shape of Qwen2.5-1.5B-Instruct, for the GPU benchmarks of train and eval
(no weights can be downloaded on the lent GPUs). torch is imported inside the function.

    from bench.benchmodel import build_model
    model_dir = build_model(Path("/tmp/work"))   # QSLM_BASE_MODEL=model_dir runs any spec on it

The tokenizer is the tiny model's (1,024 words, trained on data/raw, Qwen2.5 chat template): token ids stay below
1,024 but every matmul covers the full 151,936-word vocabulary, so speed and memory are Qwen's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from jobs.core.engine.basemodel import make_tiny_model
from jobs.core.repo import REPO_ROOT
from jobs.core.spec.schema import TinyModelSpec

QWEN25_1P5B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                   num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=32768,
                   rope_theta=1e6, rms_norm_eps=1e-6, use_sliding_window=False, bos_token_id=151643,
                   eos_token_id=151645)


def build_model(work: Path) -> Path:
    """Random Qwen2.5-1.5B-shaped checkpoint (bf16 safetensors) with the tiny model's tokenizer files."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    out = work / "qwen25-1p5b-shape"
    if (out / "config.json").is_file():
        return out
    tiny = make_tiny_model(TinyModelSpec(), REPO_ROOT / "data" / "raw", work / "tiny")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(Qwen2Config(**QWEN25_1P5B), dtype=torch.bfloat16)
    model.save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tiny / name, out / name)
    return out
