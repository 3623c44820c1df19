"""Serve fixtures.

Fast tier: `fake_build` commits a small build to a store by hand (files + a manifest with their sha256), enough
for everything that happens before a model loads: fetching, caching, verifying, refusing.
Slow tier: `smoke_store` is a temporary store holding a real smoke build, made once per session with the real
build command (`python -m workflows.build --tag smoke`), plus `smoke-loud`, the same build republished with the
adapter's LoRA B matrices scaled by 64 and its gate marked failed. The tiny model's 12-step adapter barely moves
its answers; the loud one changes them (greedy: "onon..." where smoke and the base answer blank), so a test can
tell which adapter answered.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.core.store import keys
from tests.conftest import REPO

QUESTION = "What is a quantum kernel?"


def check_a_dropped_client_frees_its_row(client, server: str) -> None:
    """A streamed request whose client goes away ~1900 tokens early leaves the batch at once: a request after it is
    not held behind the abandoned stream (which would take ~4.75x a 400-token answer)."""
    user = [{"role": "user", "content": QUESTION}]
    started = time.perf_counter()
    client.chat.completions.create(model="smoke", messages=user, max_tokens=400)
    per_400 = time.perf_counter() - started
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/v1/chat/completions", json.dumps(
        {"model": "smoke", "messages": user, "max_tokens": 1900, "stream": True}), {"content-type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200 and response.readline().startswith(b"data: ")  # generation has started
    conn.close()
    started = time.perf_counter()
    client.chat.completions.create(model="smoke", messages=user, max_tokens=4)
    assert time.perf_counter() - started < 2 * per_400 + 1.0


def start_api(env: dict, log: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`python -m jobs.serve.api --tag smoke,smoke-loud --device cpu ARGS` on a free port, its output in `log`;
    returns (process, base URL) once /v1/models answers (fails the test if it exits first)."""
    import urllib.request

    from tests.conftest import free_port, wait_for

    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jobs.serve.api", "--tag", "smoke,smoke-loud", "--port",
                                 str(port), "--device", "cpu", *args], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            urllib.request.urlopen(url + "/v1/models", timeout=2).read()
            return True
        except OSError:
            return False

    if not wait_for(lambda: proc.poll() is not None or answers(), 300, poll=0.5) or proc.poll() is not None:
        proc.kill()
        pytest.fail(f"the server did not start:\n{log.read_text()[-3000:]}")
    return proc, url


def commit_fake_build(store, tag: str, spec: dict, files: dict[str, dict[str, bytes]], status: str = "passed") -> dict:
    """Put `files` ({artifact: {path: bytes}}) under builds/<tag>/ and write the manifest last, as publish does."""
    records = {}
    for artifact, content in files.items():
        for path, data in content.items():
            store.put_bytes(keys.artifact_prefix(tag, artifact) + path, data)
        records[artifact] = [{"path": p, "sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)}
                             for p, d in sorted(content.items())]
    manifest = {"schema": 1, "tag": tag, "status": status, "created_at": "2026-01-01T00:00:00+00:00",
                "git": {"commit": "0" * 40, "dirty": False}, "spec": spec, "base_model": spec["base_model"]["id"],
                "sources": [], "artifacts": records, "metrics": {}, "previous": None,
                "gate": {"passed": status == "passed", "checks": []}}
    store.create_bytes(keys.manifest_key(tag), json.dumps(manifest).encode())
    return manifest


@pytest.fixture
def fake_store(tmp_path, monkeypatch):
    """A local store and an empty cache, both in tmp (QSLM_STORE / QSLM_CACHE set for the test)."""
    from jobs.core.store.backends import open_store

    monkeypatch.setenv("QSLM_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("QSLM_CACHE", str(tmp_path / "cache"))
    return open_store()


@pytest.fixture
def smoke_spec_dict(smoke_spec) -> dict:
    return json.loads(json.dumps(smoke_spec.to_dict()))


ADAPTER_FILES = {"adapter_config.json": b'{"r": 16}', "adapter_model.safetensors": b"weights"}


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory) -> dict:
    """Environment (QSLM_STORE, QSLM_CACHE, offline) of a temp store holding `smoke` and `smoke-loud`."""
    root = tmp_path_factory.mktemp("serve")
    env = {**os.environ, "QSLM_STORE": str(root / "store"), "QSLM_CACHE": str(root / "cache"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "workflows.build", "--tag", "smoke", "--work", str(root / "work")],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _publish_loud_adapter(root, env)
    return env


def _publish_loud_adapter(root: Path, env: dict) -> None:
    """smoke's folders, its adapter's lora_B scaled by 64, its gate failed, published as smoke-loud."""
    from safetensors.numpy import load_file, save_file

    from jobs.core.store.publish import publish
    from jobs.core.store.registry import fetch_artifact
    from jobs.core.spec.load import spec_by_tag
    from jobs.core.store.backends import open_store

    store = open_store(env["QSLM_STORE"])
    folders = {a: root / "loud" / a for a in keys.ARTIFACTS}
    for artifact, folder in folders.items():
        fetch_artifact(store, "smoke", artifact, folder)
    weights = folders["adapter"] / "adapter_model.safetensors"
    tensors = load_file(weights)
    save_file({k: v * 64 if "lora_B" in k else v for k, v in tensors.items()}, weights)
    gate = folders["report"] / "gate.json"
    gate.write_text(json.dumps({"passed": False, "checks": [
        {"metric": "similarity", "kind": "min", "threshold": 0.5, "value": 0.0, "passed": False,
         "message": "similarity 0.0000 < minimum 0.5000"}]}))
    publish(spec_by_tag("smoke"), "smoke-loud", folders["dataset"], folders["adapter"], folders["report"],
            store=store)
    shutil.rmtree(root / "loud")


@pytest.fixture
def smoke_env(smoke_store, monkeypatch) -> dict:
    """smoke_store's variables set in this process too (for in-process calls)."""
    for k in ("QSLM_STORE", "QSLM_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(k, smoke_store[k])
    return smoke_store


@pytest.fixture(scope="session")
def smoke_engine(smoke_store):
    """The engine over smoke's base with both adapters (smoke, smoke-loud), loaded once."""
    from jobs.core.store.backends import open_store
    from jobs.serve.builds import load_engine, open_build

    with pytest.MonkeyPatch.context() as env:
        for k in ("QSLM_STORE", "QSLM_CACHE"):
            env.setenv(k, smoke_store[k])
        store = open_store()
        builds = [open_build(store, t, ("adapter", "dataset")) for t in ("smoke", "smoke-loud")]
        return load_engine(builds, "cpu"), builds
