"""The spine's end-to-end check: `make build VERSION=smoke` on CPU, offline, into a fresh store."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.core import keys
from jobs.core.store import open_store

REPO = Path(__file__).resolve().parents[2]


def run_build(tag, env):
    return subprocess.run([sys.executable, "-m", "jobs.core.build", "--tag", tag, "--work", env["QSLM_WORK"]],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture
def build_env(tmp_path):
    env = dict(os.environ, QSLM_STORE=str(tmp_path / "store"), QSLM_WORK=str(tmp_path / "work"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


@pytest.mark.parametrize("tag, expected", [("../x", "not a valid build tag"), ("nope", "no build spec for tag 'nope'")])
def test_bad_tags_fail_with_one_clear_error(build_env, tag, expected):
    r = run_build(tag, build_env)
    assert r.returncode == 2 and expected in r.stderr and "smoke" in r.stderr
    assert "Traceback" not in r.stderr


def test_unavailable_base_model_fails_before_any_stage(build_env, tmp_path):
    env = dict(build_env, HF_HOME=str(tmp_path / "hf"))
    r = run_build("v1", env)
    assert r.returncode == 2 and "QSLM_BASE_MODEL" in r.stderr and "VERSION=smoke" in r.stderr
    assert "==> curate" not in r.stdout
    assert not Path(env["QSLM_STORE"]).exists() or not open_store(env["QSLM_STORE"]).list("builds/")


@pytest.mark.slow
def test_smoke_build_writes_a_complete_immutable_tag(build_env):
    r = run_build("smoke", build_env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    store = open_store(build_env["QSLM_STORE"])
    m = json.loads(store.get_bytes(keys.manifest_key("smoke")))
    assert m["status"] == "passed" and m["tag"] == "smoke"
    assert len(m["git"]["commit"]) == 40 and isinstance(m["git"]["dirty"], bool)
    assert m["sources"] and all(len(s["sha256"]) == 64 for s in m["sources"])
    assert m["spec"]["train"]["lora"]["r"] == 16 and m["dataset_sha256"]
    assert set(m["timings_s"]) == {"curate", "synthesize", "train", "eval", "publish"}
    assert {"torch", "transformers", "peft"} <= set(m["versions"]["train"])
    assert "concept_recall" in m["metrics"] and "similarity" in m["metrics"]
    for name, files in m["artifacts"].items():
        assert files, name
        for f in files:
            assert store.exists(keys.artifact_prefix("smoke", name) + f["path"])
    adapter = json.loads(store.get_bytes(keys.artifact_prefix("smoke", "adapter") + "adapter_config.json"))
    assert adapter["r"] == 16 and adapter["lora_alpha"] == 32
    assert set(adapter["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert store.exists(keys.artifact_prefix("smoke", "adapter") + "adapter_model.safetensors")
    assert store.exists(keys.artifact_prefix("smoke", "dataset") + "train.parquet")
    assert store.exists(keys.artifact_prefix("smoke", "report") + "report.html")

    before = {k: store.get_bytes(k) for k in store.list("")}
    again = run_build("smoke", build_env)
    assert again.returncode == 2 and "already exists" in again.stderr and "immutable" in again.stderr
    assert "==> curate" not in again.stdout
    assert {k: store.get_bytes(k) for k in store.list("")} == before
