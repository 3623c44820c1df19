"""Where the base model comes from: one function that every stage calls.

    python -m jobs.core.engine.basemodel --tag smoke     # prints the checkpoint folder, making the tiny model if needed

Order: env QSLM_BASE_MODEL, then base_model.path, then base_model.tiny (made here and cached), then the hub id
through the Hugging Face cache. The tiny model is a real checkpoint folder (config.json, safetensors weights,
tokenizer.json with Qwen2.5's special tokens and chat template), so it takes the same code path as Qwen.
No torch here: weights are drawn with numpy and written with safetensors, so the curate image can use it too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from jobs.core.errors import QslmError
from jobs.core.repo import REPO_ROOT
from jobs.core.spec.schema import BuildSpec, TinyModelSpec
from jobs.core.spec.load import spec_by_tag

QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
# Qwen2.5-Instruct's chat template (the branch without tools), so the tiny model formats chats like Qwen does.
QWEN25_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\n" + QWEN25_DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or (message.role == 'assistant') %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TOKENIZER_CORPUS_SUFFIXES = {".tex", ".md", ".rst", ".txt", ".bib"}  # what the tiny tokenizer learns from


class BaseModelUnavailable(QslmError):
    """The base model is neither on disk nor downloadable; the message says how to fix that."""


def cache_dir() -> Path:
    return Path(os.environ.get("QSLM_CACHE", REPO_ROOT / ".cache"))


def _corpus_files(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() in TOKENIZER_CORPUS_SUFFIXES)


def tiny_model_dir(tiny: TinyModelSpec, corpus: Path) -> Path:
    """The cache folder for this tiny config; its name changes when the config or the corpus changes."""
    # fields left at their defaults stay out of the hash, so adding a field never renames existing models
    config = {k: v for k, v in tiny.__dict__.items() if v != TinyModelSpec.__dataclass_fields__[k].default
              or k not in ("embedding_rows", "dtype")}
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for f in _corpus_files(corpus):
        h.update(f.relative_to(corpus).as_posix().encode())
        h.update(f.read_bytes())
    return cache_dir() / "models" / f"tiny-qwen2-{h.hexdigest()[:12]}"


def _train_tokenizer(tiny: TinyModelSpec, corpus: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    files = _corpus_files(corpus)
    if not files:
        raise BaseModelUnavailable(f"the tiny model's tokenizer is trained on {corpus}, but it holds no text "
                                   f"documents ({', '.join(sorted(TOKENIZER_CORPUS_SUFFIXES))})")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=tiny.vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def _random_weights(tiny: TinyModelSpec, vocab: int) -> dict[str, np.ndarray]:
    """Qwen2ForCausalLM parameter names and shapes (tied embeddings, biases on q/k/v like Qwen2.5). The embedding
    has max(vocab, tiny.embedding_rows) rows; those past the tokenizer's vocab are zero, as a trained model's unused
    rows are near it: their logit is 0 where the real words' are spread around it, so they add the matmul's cost
    and a share of a sampled draw (decoding drops them: they are no word) but practically never win a greedy one."""
    rng = np.random.default_rng(tiny.seed)
    h, inter = tiny.hidden_size, tiny.intermediate_size
    kv = tiny.num_kv_heads * (h // tiny.num_heads)
    dtype = np.dtype(tiny.dtype)

    def normal(*shape):
        if dtype == np.float32:  # the small models' draw, kept so they stay the same
            return rng.normal(0.0, 0.02, size=shape).astype(np.float32)
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(dtype)  # ~3x faster at 1.5B

    embedding = normal(vocab, h)
    if tiny.embedding_rows > vocab:
        embedding = np.concatenate([embedding, np.zeros((tiny.embedding_rows - vocab, h), dtype)])
    w = {"model.embed_tokens.weight": embedding, "model.norm.weight": np.ones(h, dtype)}
    for i in range(tiny.num_layers):
        p = f"model.layers.{i}."
        w.update({
            p + "self_attn.q_proj.weight": normal(h, h), p + "self_attn.q_proj.bias": np.zeros(h, dtype),
            p + "self_attn.k_proj.weight": normal(kv, h), p + "self_attn.k_proj.bias": np.zeros(kv, dtype),
            p + "self_attn.v_proj.weight": normal(kv, h), p + "self_attn.v_proj.bias": np.zeros(kv, dtype),
            p + "self_attn.o_proj.weight": normal(h, h),
            p + "mlp.gate_proj.weight": normal(inter, h), p + "mlp.up_proj.weight": normal(inter, h),
            p + "mlp.down_proj.weight": normal(h, inter),
            p + "input_layernorm.weight": np.ones(h, dtype),
            p + "post_attention_layernorm.weight": np.ones(h, dtype),
        })
    return w


def make_tiny_model(tiny: TinyModelSpec, corpus: Path, out: Path) -> Path:
    """Write a random-init Qwen2 checkpoint with a tokenizer trained on `corpus` to `out` (atomically)."""
    from safetensors.numpy import save_file

    if tiny.hidden_size % tiny.num_heads or tiny.num_heads % tiny.num_kv_heads:
        raise BaseModelUnavailable(f"tiny model: hidden_size {tiny.hidden_size} must divide by num_heads {tiny.num_heads}, "
                         f"and num_heads by num_kv_heads {tiny.num_kv_heads}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    tok = _train_tokenizer(tiny, corpus)
    vocab = tok.get_vocab_size()
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    tok.save(str(tmp / "tokenizer.json"))
    config = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
        "hidden_size": tiny.hidden_size, "intermediate_size": tiny.intermediate_size,
        "num_hidden_layers": tiny.num_layers, "num_attention_heads": tiny.num_heads,
        "num_key_value_heads": tiny.num_kv_heads, "vocab_size": max(vocab, tiny.embedding_rows),
        "max_position_embeddings": tiny.max_position_embeddings, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": True, "use_sliding_window": False, "attention_dropout": 0.0,
        "initializer_range": 0.02, "torch_dtype": tiny.dtype,
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": QWEN25_CHAT_TEMPLATE,
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None,
        "model_max_length": tiny.max_position_embeddings, "clean_up_tokenization_spaces": False,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
    }
    generation_config = {"bos_token_id": ids["<|endoftext|>"], "pad_token_id": ids["<|endoftext|>"],
                         "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]], "do_sample": False}
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (tmp / "special_tokens_map.json").write_text(json.dumps(
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
         "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}, indent=2))
    (tmp / "generation_config.json").write_text(json.dumps(generation_config, indent=2))
    save_file(_random_weights(tiny, vocab), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    try:
        os.rename(tmp, out)  # atomic: a half-written folder never looks like a model
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process made it first
        if not (out / "config.json").is_file():
            raise
    return out


def _from_hub(spec: BuildSpec) -> Path:
    from huggingface_hub import snapshot_download

    model_id, rev = spec.base_model.id, spec.base_model.revision
    try:
        return Path(snapshot_download(model_id, revision=rev, local_files_only=True))
    except Exception:  # not in the local cache; try the hub unless told to stay offline
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    reason = "HF_HUB_OFFLINE is set" if offline else None
    if not offline:
        try:
            return Path(snapshot_download(model_id, revision=rev, allow_patterns=["*.json", "*.safetensors",
                                                                                   "*.txt", "*.model"]))
        except Exception as exc:
            reason = f"download failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    raise BaseModelUnavailable(
        f"base model {model_id!r} (spec {spec.source_file}) is not in the Hugging Face cache ({hf_home}) and "
        f"cannot be downloaded ({reason}). Fix one of: (1) download it on a machine with network access "
        f"(`huggingface-cli download {model_id}`) and copy the cache here or set HF_HOME to it; "
        f"(2) set base_model.path in the spec to a local checkpoint folder; (3) export "
        f"QSLM_BASE_MODEL=/path/to/checkpoint; or (4) run the pipeline on the tiny model: VERSION=smoke.")


def resolve_base_model(spec: BuildSpec) -> Path:
    """The local checkpoint folder of the spec's base model; raises BaseModelUnavailable with the fix."""
    override = os.environ.get("QSLM_BASE_MODEL")
    if override:
        path = Path(override)
        if not (path / "config.json").is_file():
            raise BaseModelUnavailable(f"QSLM_BASE_MODEL={override} is not a checkpoint folder (no config.json); "
                                       f"point it at a folder saved with save_pretrained, or unset it")
        return path
    if spec.base_model.path:
        path = (REPO_ROOT / spec.base_model.path).resolve()
        if not (path / "config.json").is_file():
            raise BaseModelUnavailable(f"{spec.source_file}: base_model.path {spec.base_model.path} is not a "
                                       f"checkpoint folder (no config.json at {path})")
        return path
    if spec.base_model.tiny is not None:
        corpus = REPO_ROOT / "data" / "raw"
        out = tiny_model_dir(spec.base_model.tiny, corpus)
        if not (out / "config.json").is_file():
            make_tiny_model(spec.base_model.tiny, corpus, out)
        return out
    return _from_hub(spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the base model folder of a build (making a tiny one if needed).")
    parser.add_argument("--tag", required=True, help="build tag: data/builds/<tag>.yaml")
    args = parser.parse_args(argv)
    try:
        print(resolve_base_model(spec_by_tag(args.tag)))
    except QslmError as exc:
        print(f"model: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
