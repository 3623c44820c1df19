"""Shared fixtures: a real S3 endpoint (moto's server, started here unless QSLM_TEST_S3_ENDPOINT is set),
stores of both kinds, the smoke spec's tiny model and a random LoRA adapter on it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared(name: str) -> Path:
    """A folder of shared/ beside the repository checkout (as CI lays it out: /work/shared), also found from a
    worktree (/work/wt/<name>); where there is none, the path beside the checkout (tests that need it skip)."""
    return next((p / "shared" / name for p in REPO.parents if (p / "shared" / name).is_dir()),
                REPO.parent / "shared" / name)


@pytest.fixture(scope="session", autouse=True)
def data_root(tmp_path_factory):
    """Specs written by tests name suites, documents and overrides under pytest's temp folder: allow it as a
    data root (jobs.core.spec confines spec paths to the repository and QSLM_DATA_ROOT). Subprocesses inherit it."""
    root = tmp_path_factory.getbasetemp().resolve()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("QSLM_DATA_ROOT", str(root))
        yield root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, seconds: float = 120.0, poll: float = 0.02) -> bool:
    """Poll until condition() holds; a bound on waiting, never an assertion about speed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return condition()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def s3_endpoint():
    """URL of a real S3 HTTP endpoint: moto's server in a subprocess, bound to all interfaces so containers
    on the docker bridge can reach it too."""
    given = os.environ.get("QSLM_TEST_S3_ENDPOINT")
    if given:
        yield given
        return
    port = free_port()
    server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(server), "-H", "0.0.0.0", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    if not wait_for(lambda: _accepts(port), 30, poll=0.2):
        proc.kill()
        pytest.fail(f"moto_server did not start on port {port}")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    """Environment for an S3 store in a fresh bucket; returns the QSLM_STORE url."""
    import boto3

    bucket = f"qslm-test-{uuid.uuid4().hex[:10]}"
    for k, v in {"S3_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    url = f"s3://{bucket}"
    monkeypatch.setenv("QSLM_STORE", url)
    return url


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, monkeypatch):
    """A store of each backend, empty."""
    from jobs.core.store.backends import open_store

    if request.param == "local":
        monkeypatch.setenv("QSLM_STORE", str(tmp_path / "store"))
        return open_store()
    request.getfixturevalue("s3_env")
    return open_store()


@pytest.fixture(scope="session")
def smoke_spec():
    from jobs.core.spec.load import spec_by_tag

    return spec_by_tag("smoke")


@pytest.fixture(scope="session")
def tiny_model(smoke_spec) -> Path:
    """The smoke spec's tiny Qwen2 checkpoint folder (made once, cached under QSLM_CACHE)."""
    from jobs.core.engine.basemodel import resolve_base_model

    return resolve_base_model(smoke_spec)


@pytest.fixture(scope="session")
def tiny_adapter(tiny_model, tmp_path_factory) -> Path:
    """A LoRA adapter with random (non-zero) weights on the tiny model, saved the way the train stage saves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      init_lora_weights=False, task_type="CAUSAL_LM")
    out = tmp_path_factory.mktemp("tiny-adapter")
    get_peft_model(base, lora).save_pretrained(str(out))
    return out


def pytest_collection_modifyitems(config, items):
    """The gpu tier (marker gpu) runs only where torch sees a CUDA GPU; elsewhere its tests are skipped."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="gpu tier: no CUDA GPU here (run it with `make test-gpu` on a GPU machine)")
        for item in gpu:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def rehearsal_spec():
    """v2 on a random model of Qwen2.5-1.5B's shape (data/builds/rehearsal.yaml): the gpu tier's spec."""
    from jobs.core.spec.load import spec_by_tag

    return spec_by_tag("rehearsal")


@pytest.fixture(scope="session")
def qwen_shape_model(rehearsal_spec) -> Path:
    """The rehearsal's base checkpoint folder (made once, about 3 GB, cached under QSLM_CACHE)."""
    from jobs.core.engine.basemodel import resolve_base_model

    return resolve_base_model(rehearsal_spec)


@pytest.fixture(scope="session")
def qwen_shape_adapter(rehearsal_spec, qwen_shape_model, tmp_path_factory) -> Path:
    """A LoRA adapter as the rehearsal trains it (r16 on q/k/v/o) with random, non-zero weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    lora = rehearsal_spec.train.lora
    base = AutoModelForCausalLM.from_pretrained(str(qwen_shape_model), dtype=torch.float16, device_map={"": "cuda"})
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=list(lora.target_modules),
                        init_lora_weights=False, task_type="CAUSAL_LM")
    out = tmp_path_factory.mktemp("qwen-shape-adapter")
    get_peft_model(base, config).save_pretrained(str(out))
    del base
    torch.cuda.empty_cache()
    return out
