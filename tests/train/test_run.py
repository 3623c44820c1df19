"""The whole stage on the tiny model with real 4-bit NF4 on CPU: outputs, learning, determinism, no overwrite."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from jobs.train import TrainError
from jobs.train.run import train
from tests.train.conftest import conversations, with_train, write_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_spec(smoke_spec):
    # 16 examples, effective batch 4, 3 epochs: 12 steps; lr high enough for a random 100k-parameter model
    return with_train(smoke_spec, max_steps=None, epochs=3, learning_rate=3e-3, lr_scheduler="constant",
                      checkpoint_every=5, logging_every=1)


def test_trains_and_writes_the_adapter_folder(small_spec, tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "data", conversations(16))
    monkeypatch.setenv("ARGO_PROGRESS_FILE", str(tmp_path / "progress"))
    out = tmp_path / "adapter"
    info = train(small_spec, data, out)
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "metrics.json", "loss.png",
                 "train-info.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "adapter_config.json").read_text())
    lora = small_spec.train.lora
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (lora.r, lora.alpha, lora.dropout)
    assert sorted(config["target_modules"]) == sorted(lora.target_modules)
    assert config["base_model_name_or_path"] == small_spec.base_model.id
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["step"] for m in metrics] == list(range(1, 13)) and info["steps"] == 12
    assert {"loss", "lr", "tokens_per_s", "peak_mem_gib", "peak_alloc_gib"} <= set(metrics[0])
    first, last = sum(m["loss"] for m in metrics[:3]) / 3, sum(m["loss"] for m in metrics[-3:]) / 3
    assert last < first - 0.05, (first, last)
    assert (tmp_path / "progress").read_text().strip() == "12/12"
    saved = json.loads((out / "train-info.json").read_text())
    assert saved["spec"]["train"]["lora"]["r"] == lora.r and saved["versions"]["torch"] == torch.__version__
    assert saved["device"]["type"] == "cpu" and saved["data"]["examples"] == 16
    assert saved["preflight"]["skipped"].startswith("CPU")
    assert {"seconds", "tokens_trained", "fingerprint"} <= set(saved)
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert weights and all("lora_" in k for k in weights)
    # the same command again: nothing to do; another spec into the same folder: refused, nothing changed
    before = (out / "adapter_model.safetensors").read_bytes()
    assert train(small_spec, data, out)["fingerprint"] == info["fingerprint"]
    with pytest.raises(TrainError, match="never overwritten"):
        train(with_train(small_spec, learning_rate=1e-4), data, out)
    assert (out / "adapter_model.safetensors").read_bytes() == before


def test_same_seed_same_adapter_other_seed_other_adapter(small_spec, tmp_path):
    spec = with_train(small_spec, epochs=1)
    data = write_dataset(tmp_path / "data", conversations(8))
    runs = {name: train(s, data, tmp_path / name) and load_file(str(tmp_path / name / "adapter_model.safetensors"))
            for name, s in [("a", spec), ("b", spec), ("c", with_train(spec, seed=spec.train.seed + 1))]}
    for key in runs["a"]:
        assert torch.equal(runs["a"][key], runs["b"][key]), key
    assert any(not torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])
