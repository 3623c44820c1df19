"""`export` on a real smoke build: merged folders that load without peft and behave like the adapter, the model
card, and GGUF through llama.cpp's own converter, loaded back with llama-cpp-python."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.core.engine.generation import Engine, EngineSettings, Sampling
from jobs.serve.export import heldout_texts
from tests.serve.conftest import QUESTION, REPO

pytestmark = pytest.mark.slow
QUESTIONS = [QUESTION, "How does depolarizing noise change a kernel matrix?", "Define expressibility."]
HF_FILES = ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "README.md")

# Runs in a fresh interpreter where importing peft fails: the folder must be a plain transformers checkpoint.
NO_PEFT = """
import json, sys
sys.modules["peft"] = None
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, questions, texts = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
model = AutoModelForCausalLM.from_pretrained(folder).eval()
tok = AutoTokenizer.from_pretrained(folder)
answers, nll = [], []
for q in questions:
    prompt = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    answers.append(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
for t in texts:
    ids = tok(t, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].float()
    nll.append((float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")), ids.shape[1] - 1))
print(json.dumps({"answers": answers, "nll": nll, "quantized": hasattr(model.config, "quantization_config")}))
"""


@pytest.fixture(scope="module")
def exported(smoke_store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "smoke"
    done = subprocess.run([sys.executable, "-m", "jobs.serve.export", "--tag", "smoke", "--out", str(out),
                           "--device", "cpu"], cwd=REPO, env=smoke_store, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "held-out perplexity: adapter on its 4-bit base" in done.stdout
    return out


def _without_peft(folder: Path, texts: list[str], env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", NO_PEFT, str(folder), json.dumps(QUESTIONS), json.dumps(texts)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _engine_side(engine, adapter: str, texts: list[str]) -> dict:
    chats = [[{"role": "user", "content": q}] for q in QUESTIONS]
    return {"answers": [g.text for g in engine.chat(chats, adapter, Sampling(max_new_tokens=12))],
            "nll": engine.nll(texts, adapter)}


def _same(merged: dict, adapter: dict) -> None:
    assert merged["answers"] == adapter["answers"]
    for (a, n), (b, m) in zip(merged["nll"], adapter["nll"]):
        assert n == m and math.isclose(a, b, rel_tol=1e-4), (a, b)


def test_the_dequantized_merge_behaves_like_the_adapter_on_its_4bit_base(exported, smoke_store, smoke_engine):
    engine, (smoke, _) = smoke_engine
    texts = heldout_texts(smoke)[:4]
    merged = _without_peft(exported / "merged-dequantized", texts, smoke_store)
    assert not merged["quantized"]
    _same(merged, _engine_side(engine, "smoke", texts))


def test_the_original_merge_behaves_like_the_adapter_on_the_fp32_base(exported, smoke_store, smoke_engine, smoke_env):
    _, (smoke, _) = smoke_engine
    texts = heldout_texts(smoke)[:4]
    fp32 = dataclasses.replace(smoke.spec, train=dataclasses.replace(smoke.spec.train, quantization="none"))
    unquantized = Engine.load(fp32, {"smoke": smoke.artifact("adapter")}, EngineSettings(device="cpu"))
    _same(_without_peft(exported / "merged-original", texts, smoke_store), _engine_side(unquantized, "smoke", texts))


def test_the_folders_and_the_model_card(exported):
    for kind in ("dequantized", "original"):
        assert all((exported / f"merged-{kind}" / f).is_file() for f in HF_FILES)
    assert (exported / "adapter" / "adapter_config.json").is_file()
    card = (exported / "README.md").read_text()
    assert card == (exported / "merged-dequantized" / "README.md").read_text()
    for heading in ("## Base model", "## Data provenance", "## Training", "## Evaluation", "## Gate",
                    "## Merged models", "## How to use"):
        assert heading in card
    assert "data/raw/thesis/chapters/kernels.tex" in card and "| concept_recall | " in card
    assert "--enable-lora --max-lora-rank 16 --lora-modules smoke=./adapter" in card
    ppl = {m[0]: float(m[1]) for m in re.findall(r"\| `(adapter|merged-\w+)/`.*? \| ([\d.]+) \|", card)}
    assert set(ppl) == {"adapter", "merged-dequantized", "merged-original"}
    # The dequantized merge is the adapter's own weights in one matrix: the same perplexity up to rounding.
    assert math.isclose(ppl["merged-dequantized"], ppl["adapter"], rel_tol=1e-3)
    assert "Closest to the model that was evaluated: `merged-dequantized/`" in card


def test_gguf_export_into_a_folder_that_holds_files(exported, smoke_store):
    """FORMAT=gguf end to end: OUT already holds the HF export, so the export writes a new subfolder and changes
    nothing there; the default Q4_K_M file is loaded and asked by llama.cpp before success; a Modelfile beside it."""
    pytest.importorskip("llama_cpp", reason="FORMAT=gguf needs the gguf extra: make gguf (compiles llama.cpp)")
    before = {p: p.read_bytes() for p in exported.rglob("*") if p.is_file()}
    done = subprocess.run([sys.executable, "-m", "jobs.serve.export", "--tag", "smoke", "--out", str(exported),
                           "--format", "gguf", "--device", "cpu"], cwd=REPO, env=smoke_store, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    new = exported / "smoke"
    assert f"{exported} already holds files; they stay as they are: writing into {new} (new)" in done.stdout
    assert {p: p.read_bytes() for p in before} == before  # nothing the export did not write was replaced
    assert f"{new / 'smoke-Q4_K_M.gguf'}   (llama.cpp loaded it and answered)" in done.stdout
    modelfile = (new / "Modelfile").read_text()
    assert "FROM ./smoke-Q4_K_M.gguf\n" in modelfile and 'TEMPLATE """' in modelfile
    assert "ollama create smoke -f Modelfile" in done.stdout


def test_the_gguf_answers_like_the_merged_model_through_the_modelfile_template(exported, smoke_store, smoke_env,
                                                                                tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp", reason="FORMAT=gguf needs the gguf extra: make gguf")
    from transformers import AutoTokenizer

    from jobs.serve.gguf import answer, convert
    from jobs.serve.modelfile import render

    merged = exported / "merged-dequantized"
    path = convert(merged, tmp_path / "smoke-F16.gguf", "F16")
    vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)  # no weights: nothing to crash
    tokenizer = AutoTokenizer.from_pretrained(merged)
    text = "A quantum kernel compares 2 inputs: K(x, x') = |<phi(x)|phi(x')>|^2. It's noise-aware!"
    assert vocab.tokenize(text.encode(), add_bos=False, special=False) == \
        tokenizer(text, add_special_tokens=False)["input_ids"]
    got = answer(path, render([{"role": "user", "content": QUESTION}]), max_tokens=12)
    assert got["tokens"] >= 1
    assert got["text"].strip() == _without_peft(merged, [], smoke_store)["answers"][0]
