"""MLflow tracking against a real `mlflow server` (SQLite backend, artifacts proxied) started and stopped here on
127.0.0.1: a published build read back through MLflow's own client; a stopped and a silent tracker cost a bounded
time and one warning line, and never fail the publish."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from jobs.core.store import publish, tracking
from tests.core.conftest import stage_folders

mlflow = pytest.importorskip("mlflow", reason="the tracking extra: pip install -e '.[tracking]'")
pytestmark = pytest.mark.slow  # a real MLflow server takes seconds to start

STEPS = [{"step": s, "loss": 3.0 - 0.5 * s, "lr": 1e-4 * s, "grad_norm": 1.5 / s, "tokens_per_s": 100.0 + s,
          "seconds": 0.1, "label_tokens": 10, "tokens": 20, "peak_mem_gib": None} for s in (1, 2, 3)]
REPORT = {
    "headline": {"concept_recall": 0.5, "base_concept_recall": 0.25, "delta_concept_recall": 0.25, "rougeL": None},
    "overall": {arm: {"rougeL": {"mean": m, "low": m - 0.1, "high": m + 0.1}} for arm, m in
                (("adapter", 0.4), ("base", 0.3), ("delta", 0.1))},
    "topics": {"noise models": {"questions": 2, "adapter": {"rougeL": {"mean": 0.6}}, "base": {"rougeL": {"mean": 0.2}}}},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
                            stdout=open(root / "server.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def _publish(spec, tmp_path, monkeypatch, tag: str, tracking_uri: str) -> int:
    dataset, adapter, report = stage_folders(tmp_path)
    (adapter / "metrics.json").write_text(json.dumps(STEPS))
    (report / "metrics.json").write_text(json.dumps(REPORT))
    monkeypatch.setenv("QSLM_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    return publish.main(["--spec", str(spec.source_file), "--tag", tag, "--dataset", str(dataset),
                         "--adapter", str(adapter), "--report", str(report), "--git-commit", "abc123"])


def test_a_published_build_is_one_mlflow_run(mlflow_server, spec, tmp_path, monkeypatch, capsys):
    assert _publish(spec, tmp_path, monkeypatch, "v7", mlflow_server) == 0
    assert "tracking: build v7 logged to MLflow" in capsys.readouterr().out
    client = mlflow.tracking.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("quantum-slm")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`qslm.tag` = 'v7'")
    assert run.info.run_name == "v7" and run.info.status == "FINISHED"
    assert run.data.params["train.learning_rate"] == str(spec.train.learning_rate)
    assert json.loads(run.data.params["train.lora.target_modules"]) == list(spec.train.lora.target_modules)
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train.loss")] == \
        [(1, 2.5), (2, 2.0), (3, 1.5)]
    for name in ("train.lr", "train.grad_norm", "train.tokens_per_s"):
        assert len(client.get_metric_history(run.info.run_id, name)) == 3
    assert run.data.metrics["concept_recall"] == 0.5 and run.data.metrics["delta_concept_recall"] == 0.25
    assert "rougeL" not in run.data.metrics  # null in the report: not a number to log
    assert run.data.metrics["eval.base.rougeL"] == 0.3
    assert run.data.metrics["topic.noise models.adapter.rougeL"] == 0.6
    tags = run.data.tags
    assert tags["qslm.status"] == "passed" and tags["qslm.gate"] == "passed"
    assert tags["qslm.git_commit"] == "abc123" and tags["qslm.dataset_sha256"] == "d" * 64
    assert tags["qslm.store.manifest"] == f"{tmp_path / 'store'}/builds/v7/manifest.json"
    assert tags["qslm.store.report_html"].endswith("/report/report.html") and "/attempts/" in tags["qslm.store.report"]
    listed = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert listed == {"report/report.html", "report/metrics.json", "report/gate.json"}
    local = client.download_artifacts(run.info.run_id, "report/metrics.json", str(tmp_path / "down"))
    assert json.load(open(local)) == REPORT


def test_a_stopped_tracker_costs_one_warning_line_and_never_fails_the_publish(spec, tmp_path, monkeypatch, capsys):
    started = time.monotonic()
    assert _publish(spec, tmp_path, monkeypatch, "v8", f"http://127.0.0.1:{_free_port()}") == 0
    assert time.monotonic() - started < 30  # the publish itself; the tracker's share is bounded just below
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tracking: warning: build v8 was not fully logged to MLflow")
    assert "Connection refused" in err[0] and "unaffected" in err[0]


def test_a_silent_tracker_is_given_up_on_at_the_deadline(capsys, tmp_path):
    """A server that accepts the connection and never answers: one deadline for every request, no retries."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        manifest = {"tag": "v9", "attempt": None, "spec": {}, "metrics": {}}
        folders = {name: tmp_path for name in ("dataset", "adapter", "report")}
        os.environ["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{silent.getsockname()[1]}"
        try:
            started = time.monotonic()
            assert tracking.log_build(manifest, folders, "store", request_timeout_s=1.0) is None
            waited = time.monotonic() - started
        finally:
            del os.environ["MLFLOW_TRACKING_URI"]
    assert 0.9 < waited < 3.0
    assert capsys.readouterr().err.count("\n") == 1


def test_a_refusing_tracker_is_one_warning_line(capsys, tmp_path, monkeypatch):
    """A server that answers every request 403 (a token it does not accept): the first answer ends the logging."""
    import http.server
    import threading

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(403)
            self.end_headers()
            self.wfile.write(b'{"error_code": "PERMISSION_DENIED"}')

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "wrong")
        manifest = {"tag": "v9", "attempt": None, "spec": {}, "metrics": {}}
        assert tracking.log_build(manifest, {n: tmp_path for n in ("dataset", "adapter", "report")}, "s") is None
    finally:
        server.shutdown()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "answered 403: {\"error_code\": \"PERMISSION_DENIED\"}" in err[0]


def test_no_uri_no_tracking_and_a_non_server_uri_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    manifest = {"tag": "v9", "spec": {}}
    assert tracking.log_build(manifest, {}, "store") is None and capsys.readouterr() == ("", "")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:./mlruns")
    assert tracking.log_build(manifest, {}, "store") is None
    assert "is not an MLflow tracking server (http:// or https://)" in capsys.readouterr().err
