"""`make submit` against a local HTTP server that plays the Argo Server (plain, under a base path, or with a
self-signed certificate like a stock argo-server) and records every request."""

from __future__ import annotations

import datetime
import gzip
import io
import hashlib
import json
import socket
import ssl
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from pathlib import Path

from jobs.core.store import keys
from jobs.core.store.backends import open_store
from jobs.core.spec.suite import load_suite
from tests.conftest import REPO
from workflows import submit
from workflows.emulator.lint import lint
from workflows.names import IMAGE_TAG
from workflows.pipeline import NAME, pipeline_template
from workflows.steps import DIGEST_ANNOTATION

# Hera 7.1's service serialises requests with pydantic's deprecated .json(); not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The `json` method is deprecated")

NS = "builds"
TOKEN = "Bearer good-token"


class FakeArgo:
    """Argo Server's workflow-template and workflow endpoints, in memory; every request is recorded."""

    def __init__(self, status_override: int | None = None, base: str = "", tls: Path | None = None):
        self.requests: list[dict] = []
        # the chart installed the template: the one this checkout renders
        self.templates: dict[str, dict] = {NAME: json.loads(json.dumps(pipeline_template().to_dict()))}
        self.base = base
        self.status_override = status_override
        self.statuses: list[dict] = []  # what successive GETs of a workflow return, for --wait
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = self.path.split("?")[0]
                fake.requests.append({"method": self.command, "path": path,
                                      "auth": self.headers.get("Authorization"), "body": body})
                if not path.startswith(fake.base + "/api/"):
                    return self._reply(404, {"message": f"nothing at {path}", "code": 5})
                status, reply = fake.route(self.command, path[len(fake.base):], self.headers, body)
                self._reply(status, reply)

            do_GET = do_POST = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls:  # as a stock argo-server: TLS with a certificate nobody signed
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def route(self, method, path, headers, body):
        if self.status_override:
            return self.status_override, {"message": "denied by the test", "code": 7}
        if headers.get("Authorization") != TOKEN:
            return 401, {"message": "Unauthorized", "code": 16}
        parts = path.strip("/").split("/")  # api v1 <kind> <ns> [<name>]
        if parts[2] == "workflow-templates" and method == "GET":
            found = self.templates.get(parts[4])
            return (200, found) if found else (404, {"message": "not found", "code": 5})
        if parts[2] == "workflows" and method == "POST":
            return 200, body["workflow"]
        if parts[2] == "workflows" and method == "GET" and self.statuses:
            return 200, {"metadata": {"name": parts[4]}, "spec": {}, "status": self.statuses.pop(0)}
        return 404, {"message": f"no route {method} {path}", "code": 5}

    def calls(self, method, kind):
        return [r for r in self.requests if r["method"] == method and r["path"].split("/")[3] == kind]

    def close(self):
        self.server.shutdown()


@pytest.fixture
def argo():
    fake = FakeArgo()
    yield fake
    fake.close()


def _argo_env(url, token=TOKEN, **env):
    return submit.argo_from_env({"ARGO_SERVER": url, "ARGO_TOKEN": token, "ARGO_NAMESPACE": NS, **env})


def test_env_mapping_follows_the_argo_cli():
    a = submit.argo_from_env({"ARGO_SERVER": "argo.lan:2746", "ARGO_TOKEN": "abc"})
    assert (a.host, a.token, a.namespace, a.verify_ssl) == ("https://argo.lan:2746/", "Bearer abc", "argo", True)
    b = submit.argo_from_env({"ARGO_SERVER": "localhost:2746", "ARGO_SECURE": "false",
                              "ARGO_INSECURE_SKIP_VERIFY": "true", "ARGO_NAMESPACE": "ml"})
    assert (b.host, b.namespace, b.verify_ssl) == ("http://localhost:2746/", "ml", False)
    assert b.ui_link("qslm-v2-1") == "http://localhost:2746/workflows/ml/qslm-v2-1"
    c = submit.argo_from_env({"ARGO_SERVER": "https://lab.example/argo/"})
    assert c.host == "https://lab.example/argo/" and c.ui_link("r") == "https://lab.example/argo/workflows/argo/r"
    d = submit.argo_from_env({"ARGO_SERVER": "lab.example", "ARGO_BASE_HREF": "/argo/"})
    assert d.host == "https://lab.example/argo/"
    with pytest.raises(submit.SubmitError, match="ARGO_SERVER is not set"):
        submit.argo_from_env({})


def test_submit_checks_the_template_then_creates_a_workflow_referencing_it(argo, data_repo, s3_env):
    commit = submit._git(data_repo, "rev-parse", "HEAD")
    (name,) = submit.submit(["smoke"], _argo_env(argo.url), repo=data_repo)

    # the chart owns the template: one GET to compare its digest, never a write, then the Workflow create
    assert [(r["method"], r["path"]) for r in argo.requests] == [
        ("GET", f"/api/v1/workflow-templates/{NS}/{NAME}"),
        ("POST", f"/api/v1/workflows/{NS}"),
    ]
    assert all(r["auth"] == TOKEN for r in argo.requests)
    wf = argo.calls("POST", "workflows")[0]["body"]["workflow"]
    assert wf["metadata"]["name"] == name and wf["metadata"]["namespace"] == NS
    assert wf["spec"]["workflowTemplateRef"] == {"name": NAME}
    params = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
    assert params["tag"] == params["spec"] == "smoke" and params["image-tag"] == IMAGE_TAG
    assert params["git-commit"] == commit and params["git-dirty"] == "false"
    assert params["data-hash"] == submit._git(data_repo, "rev-parse", "HEAD:data")
    assert params["previous"] == ""  # empty store: a first build
    notes = wf["metadata"]["annotations"]
    assert notes["workflows.argoproj.io/title"] == f"smoke @ {commit[:8]}"
    assert commit[:8] in notes["workflows.argoproj.io/description"]
    assert params["data-hash"][:12] in notes["workflows.argoproj.io/description"]
    assert lint(pipeline_template().to_dict(), wf) == []

    # data/ at that commit is where every step reads it
    blob = open_store().get_bytes(f"runs/{name}/checkout/data.tgz")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tf:
        names = tf.getnames()
    assert "data/builds/smoke.yaml" in names and any(n.startswith("data/raw/") for n in names)
    assert {n.split("/")[0] for n in names if n != "pax_global_header"} == {"data"}


def test_a_template_missing_or_not_this_checkouts_is_refused_and_never_written(argo, data_repo, s3_env):
    """Helm owns the WorkflowTemplate (the git trigger runs it too): make submit compares, never creates or updates."""
    argo.templates[NAME]["metadata"]["annotations"][DIGEST_ANNOTATION] = "0" * 64
    with pytest.raises(submit.SubmitError, match=r"differs from workflows/pipeline.py.*helm upgrade"):
        submit.submit(["smoke"], _argo_env(argo.url), repo=data_repo)
    argo.templates.clear()
    with pytest.raises(submit.SubmitError, match=f"no WorkflowTemplate {NAME} in namespace '{NS}': install the chart"):
        submit.submit(["smoke"], _argo_env(argo.url), repo=data_repo)
    assert {r["method"] for r in argo.requests} == {"GET"}


def test_several_tags_run_side_by_side_as_one_workflow_each(argo, data_repo, s3_env):
    spec = (data_repo / "data" / "builds" / "smoke.yaml").read_text()
    (data_repo / "data" / "builds" / "smoke-b.yaml").write_text(spec)
    submit._git(data_repo, "add", "data")
    submit._git(data_repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "b")
    names = submit.submit(["smoke", "smoke-b"], _argo_env(argo.url), repo=data_repo)
    created = [c["body"]["workflow"] for c in argo.calls("POST", "workflows")]
    assert [w["metadata"]["name"] for w in created] == names and len(set(names)) == 2
    params = [{p["name"]: p["value"] for p in w["spec"]["arguments"]["parameters"]} for w in created]
    assert [p["tag"] for p in params] == ["smoke", "smoke-b"]
    assert [p["image-tag"] for p in params] == [IMAGE_TAG, IMAGE_TAG]  # one image set serves every spec
    for name in names:
        assert open_store().exists(f"runs/{name}/checkout/data.tgz")


def test_one_bad_tag_submits_none(argo, data_repo, s3_env):
    with pytest.raises(submit.SubmitError, match="no build spec for 'v99'"):
        submit.submit(["smoke", "v99"], _argo_env(argo.url), repo=data_repo)
    assert argo.requests == []


def test_a_base_path_in_argo_server_is_kept(data_repo, s3_env):
    fake = FakeArgo(base="/argo")
    try:
        submit.submit(["smoke"], _argo_env(fake.url + "/argo"), repo=data_repo)
        assert [r["path"] for r in fake.requests] == [f"/argo/api/v1/workflow-templates/{NS}/{NAME}",
                                                      f"/argo/api/v1/workflows/{NS}"]
    finally:
        fake.close()


def _self_signed(folder: Path) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder


def test_a_stock_argo_servers_self_signed_certificate(data_repo, s3_env, tmp_path):
    fake = FakeArgo(tls=_self_signed(tmp_path))
    try:
        with pytest.raises(submit.SubmitError, match="certificate this machine does not trust.*"
                                                     "ARGO_INSECURE_SKIP_VERIFY=true"):
            submit.submit(["smoke"], _argo_env(fake.url), repo=data_repo)
        assert submit.submit(["smoke"], _argo_env(fake.url, ARGO_INSECURE_SKIP_VERIFY="true"), repo=data_repo)
    finally:
        fake.close()


def test_previous_build_is_the_current_one(argo, data_repo, s3_env):
    store = open_store()
    report = {"path": "metrics.json", "sha256": hashlib.sha256(b"{}").hexdigest(), "bytes": 2}
    lineage = {"suite": {"name": "core", "sha256": load_suite(REPO / "data" / "eval" / "core.yaml").sha256},
               "base_model": "tiny-qwen2"}  # smoke's: the previous build is of the same lineage
    store.put_bytes(keys.manifest_key("v1"), json.dumps({"tag": "v1", "status": "passed", "created_at": "2026-01-01",
                                                          "artifacts": {"report": [report]}, **lineage}).encode())
    store.put_bytes(keys.artifact_prefix("v1", "report") + "metrics.json", b"{}")
    submit.submit(["smoke"], _argo_env(argo.url), repo=data_repo)
    wf = argo.calls("POST", "workflows")[0]["body"]["workflow"]
    params = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
    assert params["previous"] == "v1"
    # eval reads the previous report by the key its manifest gives, after the submitter re-hashed it
    assert params["previous-report"] == keys.artifact_prefix("v1", "report") + "metrics.json"
    store.put_bytes(keys.artifact_prefix("v1", "report") + "metrics.json", b'{"headline": {}}')  # damaged
    with pytest.raises(submit.SubmitError, match="sha256 differs"):
        submit.submit(["smoke"], _argo_env(argo.url), repo=data_repo)


def test_bad_token_says_so(argo, data_repo, s3_env):
    with pytest.raises(submit.SubmitError, match=r"rejected the token \(401\).*ARGO_TOKEN"):
        submit.submit(["smoke"], _argo_env(argo.url, token="Bearer wrong"), repo=data_repo)
    assert not argo.calls("POST", "workflows")


def test_forbidden_names_the_namespace(data_repo, s3_env):
    fake = FakeArgo(status_override=403)
    try:
        with pytest.raises(submit.SubmitError, match=rf"namespace '{NS}' \(403\)"):
            submit.submit(["smoke"], _argo_env(fake.url), repo=data_repo)
    finally:
        fake.close()


def test_unreachable_server_says_where_it_looked(data_repo, s3_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(submit.SubmitError, match=rf"cannot reach the Argo Server at http://127.0.0.1:{port}"):
        submit.submit(["smoke"], _argo_env(f"http://127.0.0.1:{port}"), repo=data_repo)


def test_unknown_tag_lists_the_specs_and_sends_nothing(argo, data_repo, s3_env):
    with pytest.raises(submit.SubmitError, match=r"no build spec for 'v99'.*smoke"):
        submit.submit(["v99"], _argo_env(argo.url), repo=data_repo)
    with pytest.raises(submit.SubmitError, match="not a valid build tag"):
        submit.submit(["../v1"], _argo_env(argo.url), repo=data_repo)
    assert argo.requests == []


def test_complete_tag_is_refused_before_anything_is_sent(argo, data_repo, s3_env):
    open_store().put_bytes(keys.manifest_key("smoke"), b"{}")
    with pytest.raises(submit.SubmitError, match="already complete"):
        submit.submit(["smoke"], _argo_env(argo.url), repo=data_repo)
    assert argo.requests == []


def test_uncommitted_data_is_refused_unless_allowed(argo, data_repo, s3_env):
    (data_repo / "data" / "raw" / "new.md").write_text("# New notes\n\nA paragraph on quantum kernels.\n")
    with pytest.raises(submit.SubmitError, match="uncommitted changes"):
        submit.submit(["smoke"], _argo_env(argo.url), repo=data_repo)
    (name,) = submit.submit(["smoke"], _argo_env(argo.url), repo=data_repo, allow_dirty=True)
    blob = open_store().get_bytes(f"runs/{name}/checkout/data.tgz")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tf:
        assert "data/raw/new.md" in tf.getnames()
    wf = argo.calls("POST", "workflows")[0]["body"]["workflow"]
    assert {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}["git-dirty"] == "true"


def test_main_prints_name_and_ui_link(argo, data_repo, s3_env, monkeypatch, capsys):
    monkeypatch.setattr(submit, "REPO_ROOT", data_repo)
    for k, v in {"ARGO_SERVER": argo.url, "ARGO_TOKEN": "good-token", "ARGO_NAMESPACE": NS}.items():
        monkeypatch.setenv(k, v)
    assert submit.main(["--tag", "smoke"]) == 0
    out = capsys.readouterr().out
    name = argo.calls("POST", "workflows")[0]["body"]["workflow"]["metadata"]["name"]
    assert f"submitted {name}" in out and f"{argo.url}/workflows/{NS}/{name}" in out
    monkeypatch.setenv("ARGO_TOKEN", "bad")
    assert submit.main(["--tag", "smoke"]) == 2
    assert "401" in capsys.readouterr().err


def test_run_names_are_kubernetes_names():
    from datetime import datetime, timezone

    name = submit.run_name("V2_final.1", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert name == "qslm-v2-final-1-20260102-030405"
    assert yaml.safe_load(f"n: {name}")["n"] == name


def test_wait_follows_the_run_to_its_end(argo, capsys):
    node = {"id": "n1", "name": "run.train", "displayName": "train", "type": "Pod", "templateName": "train"}
    argo.statuses = [
        {"phase": "Running", "nodes": {"n1": node | {"phase": "Running", "progress": "3/12"}}},
        {"phase": "Running", "nodes": {"n1": node | {"phase": "Running", "progress": "3/12"}}},
        {"phase": "Succeeded", "nodes": {"n1": node | {"phase": "Succeeded", "progress": "12/12"}}},
    ]
    assert submit.follow(_argo_env(argo.url), ["qslm-v2-1"], poll_s=0) == {"qslm-v2-1": "Succeeded"}
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [["train", "Running", "3/12"], ["train", "Succeeded", "12/12"],
                                                ["qslm-v2-1:", "Succeeded"]]
    assert argo.requests[0]["path"] == f"/api/v1/workflows/{NS}/qslm-v2-1"


def test_wait_exits_3_when_the_only_failure_is_a_failed_gate(argo):
    """The verdict step fails a build whose gate failed (it is stored as failed-gate): make submit WAIT=1 says so."""
    def node(i, name, phase, code=None):
        return {"id": f"n{i}", "name": f"run.{name}", "displayName": name, "type": "Pod", "phase": phase} | \
            ({"outputs": {"exitCode": str(code)}} if code is not None else {})
    # as on a cluster: eval exits 3 as well (report written), publish stores failed-gate, the verdict exits 3
    gate = {"phase": "Failed", "nodes": {"n0": node(0, "eval-first", "Failed", 3),
                                         "n1": node(1, "publish-first", "Succeeded", 0),
                                         "n2": node(2, "verdict-first", "Failed", 3)}}
    broken = {"phase": "Failed", "nodes": {"n1": node(1, "train", "Failed", 1)}}
    eval_broke = {"phase": "Failed", "nodes": {"n0": node(0, "eval-first", "Failed", 1),
                                               "n2": node(2, "verdict-first", "Failed", 3)}}
    argo.statuses = [gate]
    assert submit.follow(_argo_env(argo.url), ["a"], poll_s=0) == {"a": "GateFailed"}
    argo.statuses = [broken]
    assert submit.follow(_argo_env(argo.url), ["b"], poll_s=0) == {"b": "Failed"}
    argo.statuses = [eval_broke]
    assert submit.follow(_argo_env(argo.url), ["c"], poll_s=0) == {"c": "Failed"}
    assert submit.exit_status({"a": "Succeeded", "b": "Succeeded"}) == 0
    assert submit.exit_status({"a": "Succeeded", "b": "GateFailed"}) == 3
    assert submit.exit_status({"a": "GateFailed", "b": "Failed"}) == 1


def test_make_submit_validates_every_spec_before_anything_else():
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(["make", "-n", "submit", "VERSION=v2,v3", "WAIT=1"], cwd=repo, capture_output=True,
                          text=True, env={**os.environ, "MAKEFLAGS": ""})
    lines = [line for line in proc.stdout.splitlines() if "-m jobs." in line or "-m workflows." in line]
    assert proc.returncode == 0 and lines[0].endswith("-m jobs.core.spec 'v2' 'v3'"), proc.stdout
    assert "-m workflows.submit --tag 'v2,v3' --wait" in lines[1]


def test_only_the_k3s_import_runs_through_sudo(monkeypatch):
    """`sudo make submit IMAGES=1 K3S=1` dropped ARGO_* and AWS_*: make submit runs as the user and asks sudo for
    the import alone; run under sudo without them, it says why they are missing."""
    ran = []
    monkeypatch.setattr(submit.subprocess, "run", lambda cmd, cwd: ran.append(cmd) or type("P", (), {"returncode": 0}))
    monkeypatch.setattr(submit.os, "geteuid", lambda: 1000)
    submit.build_images(IMAGE_TAG, "", k3s_import=True)
    submit.build_images(IMAGE_TAG, "reg.lan:5000", k3s_import=False)
    assert ran[0][0] == "sudo" and ran[0][-3:] == ["--tag", IMAGE_TAG, "--k3s-import"]
    assert ran[1][0] != "sudo"
    with pytest.raises(submit.SubmitError, match="sudo drops your environment"):
        submit.argo_from_env({"SUDO_USER": "alice"})
