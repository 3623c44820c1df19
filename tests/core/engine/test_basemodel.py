import dataclasses
import json

import pytest

from jobs.core.engine.basemodel import BaseModelUnavailable, make_tiny_model, resolve_base_model, tiny_model_dir
from jobs.core.spec.schema import BaseModelSpec, TinyModelSpec
from jobs.core.spec.load import spec_by_tag


def test_unavailable_hub_model_says_what_is_wrong_and_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("QSLM_BASE_MODEL", raising=False)
    msg = str(pytest.raises(BaseModelUnavailable, resolve_base_model, spec_by_tag("v1")).value)
    assert "Qwen/Qwen2.5-1.5B-Instruct" in msg and "HF_HUB_OFFLINE is set" in msg
    assert "base_model.path" in msg and "QSLM_BASE_MODEL" in msg and "VERSION=smoke" in msg


def test_env_override_must_be_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("QSLM_BASE_MODEL", str(tmp_path))
    with pytest.raises(BaseModelUnavailable, match="no config.json"):
        resolve_base_model(spec_by_tag("v1"))


def test_spec_path_must_be_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.delenv("QSLM_BASE_MODEL", raising=False)
    spec = spec_by_tag("v1")
    spec = dataclasses.replace(spec, base_model=BaseModelSpec(id="x", path=str(tmp_path)))
    with pytest.raises(BaseModelUnavailable, match="base_model.path"):
        resolve_base_model(spec)


def test_tiny_model_is_cached_by_config_and_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("QSLM_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("A quantum kernel is the squared overlap of two encoded states. " * 20)
    a = tiny_model_dir(TinyModelSpec(), corpus)
    assert a == tiny_model_dir(TinyModelSpec(), corpus)
    assert a != tiny_model_dir(TinyModelSpec(seed=1), corpus)
    assert a != tiny_model_dir(TinyModelSpec(embedding_rows=4096), corpus)
    (corpus / "a.md").write_text("changed")
    assert a != tiny_model_dir(TinyModelSpec(), corpus)


def test_fields_left_at_their_defaults_keep_the_cache_name_of_a_model_made_before_they_existed(tmp_path):
    import hashlib

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("A kernel.")
    before = {k: v for k, v in vars(TinyModelSpec()).items() if k not in ("embedding_rows", "dtype")}
    h = hashlib.sha256(json.dumps(before, sort_keys=True).encode())
    h.update(b"a.md")
    h.update(b"A kernel.")
    assert tiny_model_dir(TinyModelSpec(), corpus).name == f"tiny-qwen2-{h.hexdigest()[:12]}"


def test_the_embedding_is_padded_with_zero_rows_and_saved_in_the_asked_dtype(tmp_path):
    from safetensors.numpy import load_file

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("A fidelity kernel compares encoded states. " * 30)
    out = make_tiny_model(TinyModelSpec(embedding_rows=1536, dtype="float16"), corpus, tmp_path / "m")
    config = json.loads((out / "config.json").read_text())
    words = len(json.loads((out / "tokenizer.json").read_text())["model"]["vocab"])
    weights = load_file(str(out / "model.safetensors"))
    embedding = weights["model.embed_tokens.weight"]
    assert config["vocab_size"] == 1536 and config["torch_dtype"] == "float16"
    assert embedding.shape == (1536, 64) and {w.dtype.name for w in weights.values()} == {"float16"}
    assert words <= 1024 and not embedding[words:].any() and embedding[:words].std() > 0.01


def test_the_rehearsal_base_has_qwen25_1p5b_shape():
    tiny = spec_by_tag("rehearsal").base_model.tiny
    assert (tiny.hidden_size, tiny.num_layers, tiny.num_heads, tiny.num_kv_heads, tiny.intermediate_size,
            tiny.embedding_rows) == (1536, 28, 12, 2, 8960, 151936)
    assert spec_by_tag("rehearsal").train.memory_budget_gib == 11.5


@pytest.mark.slow
def test_tiny_model_is_a_real_qwen2_checkpoint_with_qwen_chat_format(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.tex").write_text("\\section{Kernels} A fidelity kernel compares encoded states. " * 30)
    out = make_tiny_model(TinyModelSpec(), corpus, tmp_path / "m")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["architectures"] == ["Qwen2ForCausalLM"]
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    text = tok.apply_chat_template([{"role": "user", "content": "What is a kernel?"},
                                    {"role": "assistant", "content": "An inner product."}], tokenize=False)
    assert text.endswith("<|im_start|>assistant\nAn inner product.<|im_end|>\n")
    assert tok.eos_token == "<|im_end|>" and tok.convert_tokens_to_ids("<|im_end|>") == config["eos_token_id"]
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text  # byte-level BPE: lossless round trip
    out_ids = model.generate(**tok(["kernel"], return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert out_ids.shape[1] > 1
