"""Every QUANT that `make export FORMAT=gguf` offers loads in llama.cpp and generates, on a tiny Qwen2 whose
tensor widths are multiples of 256 (so the K-quants are really K-quants: the smoke model's 64-wide tensors fall
back to other types). llama.cpp runs in a child process (gguf.answer): a crash fails the one test, naming its
signal, and the test run goes on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jobs.core.engine.basemodel import make_tiny_model
from jobs.core.repo import REPO_ROOT
from jobs.core.spec.schema import TinyModelSpec
from jobs.serve import ServeError, gguf
from jobs.serve.exportargs import QUANTS
from jobs.serve.modelfile import render

# 256-wide: hidden 256 (4 heads of 64, 2 KV heads: k/v output 128), MLP 512; every matmul input a multiple of 256
WIDE = TinyModelSpec(hidden_size=256, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=512,
                     vocab_size=1024, seed=0)
# the type llama.cpp must use for the MLP's up projection (256 wide) at each file type: no fallback
UP_TYPE = {"F16": "F16", "BF16": "BF16", "Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K_M": "Q5_K", "Q5_K_S": "Q5_K",
           "Q5_0": "Q5_0", "Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K", "Q4_0": "Q4_0", "Q3_K_M": "Q3_K", "Q2_K": "Q2_K"}
CHAT = [{"role": "user", "content": "What is a quantum kernel?"}]


@pytest.fixture(scope="module")
def wide_f16(tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="FORMAT=gguf needs the gguf extra: make gguf (compiles llama.cpp)")
    root = tmp_path_factory.mktemp("wide")
    model = make_tiny_model(WIDE, REPO_ROOT / "data" / "raw", root / "model")
    return {"F16": gguf.to_f16(model, root / "wide-F16.gguf"),
            "BF16": gguf.to_f16(model, root / "wide-BF16.gguf", "bf16")}


def _tensor_types(path) -> dict[str, str]:
    sys.path.insert(0, str(gguf.converter_dir() / "gguf-py"))
    try:
        from gguf import GGUFReader
    finally:
        sys.path.pop(0)
    return {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}


@pytest.mark.slow
@pytest.mark.parametrize("quant", QUANTS)
def test_every_offered_quant_loads_and_generates(wide_f16, quant, tmp_path):
    path = wide_f16.get(quant) or gguf.quantize(wide_f16["F16"], tmp_path / f"wide-{quant}.gguf", quant)
    assert _tensor_types(path)["blk.0.ffn_up.weight"] == UP_TYPE[quant]
    got = gguf.answer(path, render(CHAT), max_tokens=8)
    assert got["tokens"] >= 1 and got["prompt_tokens"] > 10


def test_a_llama_cpp_crash_fails_with_its_signal_named(monkeypatch, tmp_path):
    """What the child's death looks like to the caller (a real crash is what the test above would catch)."""
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, -11, "", ""))
    with pytest.raises(ServeError, match=r"llama.cpp crashed \(SIGSEGV\) loading or running .*x\.gguf"):
        gguf.answer(tmp_path / "x.gguf", "prompt")
