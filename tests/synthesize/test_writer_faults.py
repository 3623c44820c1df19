"""The writer endpoint down, slow or erroring: retries with backoff, then a clear error, and nothing written
in the dataset folder; a passing failure is absorbed by the retries."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys

import pytest

from jobs.core.repo import REPO_ROOT
from jobs.synthesize.run import synthesize
from jobs.core.engine.writers import WriterError
from tests.synthesize.conftest import synth_spec


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket closes


def _nothing_written(tmp_path):
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_endpoint_down(smoke_spec, curated, tmp_path):
    spec = synth_spec(smoke_spec, f"http://127.0.0.1:{_closed_port()}/v1")
    with pytest.raises(WriterError, match=r"failed 3 times .*last: Connection error.*rerun to resume"):
        synthesize(spec, curated, tmp_path / "out", quiet=True)
    _nothing_written(tmp_path)


def test_endpoint_slow(smoke_spec, curated, endpoint, tmp_path):
    endpoint.delay_s = 1.0
    spec = synth_spec(smoke_spec, endpoint.url)
    writer = dataclasses.replace(spec.synthesize.writer, timeout_s=0.2, concurrency=1)
    spec = dataclasses.replace(spec, synthesize=dataclasses.replace(spec.synthesize, writer=writer))
    with pytest.raises(WriterError, match=r"no reply within 0.2 s"):
        synthesize(spec, curated, tmp_path / "out", quiet=True)
    assert endpoint.requests == 3  # the first request, tried three times; nothing else was sent
    _nothing_written(tmp_path)


def test_endpoint_erroring_then_recovering(smoke_spec, curated, endpoint, tmp_path):
    spec = synth_spec(smoke_spec, endpoint.url, paraphrases=0)
    endpoint.fail = 10**6
    with pytest.raises(WriterError, match=r"HTTP 500"):
        synthesize(spec, curated, tmp_path / "out", quiet=True)
    _nothing_written(tmp_path)
    endpoint.fail, endpoint.script, endpoint.requests = 2, lambda prompt: "No", 0  # two 500s, then it answers
    st = synthesize(spec, curated, tmp_path / "out", quiet=True)
    assert endpoint.requests == st["synthesis"]["requests"] + 2 and st["synthesis"]["facts"]["found"] == 0


def test_a_refused_request_is_not_retried(smoke_spec, curated, endpoint, tmp_path):
    endpoint.refuse = 404  # e.g. the model name is wrong
    with pytest.raises(WriterError, match=r"refused the request for model scripted: HTTP 404"):
        synthesize(synth_spec(smoke_spec, endpoint.url), curated, tmp_path / "out", quiet=True)
    assert endpoint.requests <= 4  # the requests already in flight (concurrency 4), none retried
    _nothing_written(tmp_path)


def test_cli_says_what_is_wrong_without_a_traceback(curated, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text((REPO_ROOT / "data/builds/smoke.yaml").read_text().split("\nsynthesize:")[0]
                    + f"\nsynthesize:\n  writer: {{kind: openai, model: m, base_url: 'http://127.0.0.1:{_closed_port()}"
                    f"/v1', retries: 1, backoff_s: 0.01}}\n")
    run = subprocess.run([sys.executable, "-m", "jobs.synthesize", "--spec", str(spec), "--dataset", str(curated),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO_ROOT)
    assert run.returncode == 2 and run.stderr.startswith("synthesize: error: writer endpoint http://127.0.0.1:")
    assert "Traceback" not in run.stderr
    _nothing_written(tmp_path)
