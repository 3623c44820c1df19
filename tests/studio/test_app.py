"""The studio's server without a browser or a model (unit tier): hand-made builds in a local store, the studio as a
subprocess on a free port, requests with urllib. The browser tests (test_studio.py) cover the pages in Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from jobs.core.store import keys, registry
from jobs.studio.records import spec_diff
from jobs.studio.svg import loss_svg
from tests.conftest import REPO, free_port, wait_for
from tests.serve.conftest import commit_fake_build

SPEC = {"base_model": {"id": "tiny-qwen2"}, "train": {"max_steps": 12, "lora": {"r": 16}}}


def _report(recall: float) -> dict[str, bytes]:
    metrics = {"headline": {"concept_recall": recall}, "overall": {"adapter": {"concept_recall": {
        "mean": recall, "low": recall - 0.1, "high": recall + 0.1}}}, "topics": {}, "questions": [],
        "suite": {"name": "core", "sha256": "0" * 64}}
    return {"metrics.json": json.dumps(metrics).encode(), "report.html": b"<html><body>report</body></html>"}


def _files(recall: float) -> dict:
    return {"dataset": {"stats.json": b"{}"}, "adapter": {"metrics.json": b'[{"step": 1, "loss": 2.0}]'},
            "report": _report(recall)}


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from jobs.core.store.backends import open_store

    root = tmp_path_factory.mktemp("studio-app")
    store = open_store(str(root / "store"))
    for tag, recall, spec in (("a1", 0.2, SPEC), ("b2", 0.6, SPEC), ("c3", 0.4, {**SPEC, "train": {"max_steps": 4}})):
        manifest = commit_fake_build(store, tag, spec, _files(recall))
        manifest["metrics"] = {"concept_recall": recall}  # publish copies the headline into the manifest
        store.put_bytes(keys.manifest_key(tag), json.dumps(manifest).encode())
    key = next(k for k, r in registry.artifact_files(registry.read_manifest(store, "c3"), "c3", "report")
               if r["path"] == "report.html")
    store.put_bytes(key, b"<html><body>tampered</body></html>")
    port = free_port()
    env = {**os.environ, "QSLM_STORE": str(root / "store")}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.studio", "--port", str(port), "--work", str(root / "w")],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _status(url + "/running") == 200, 60, 0.2)
    yield url, store
    proc.terminate()
    proc.wait(30)


def _status(url: str, data: bytes | None = None, headers: dict | None = None) -> int:
    try:
        return urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers or {}), timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _get(url: str) -> str:
    return urllib.request.urlopen(url, timeout=10).read().decode()


def test_the_builds_page_sorts_and_filters_on_the_server(studio):
    url, _ = studio
    page = _get(url + "/?sort=concept_recall&order=desc")
    assert page.index('data-tag="b2"') < page.index('data-tag="a1"')
    assert "[0.500, 0.700]" in page  # b2's interval from its report
    page = _get(url + "/?q=a1")
    assert 'data-tag="a1"' in page and 'data-tag="b2"' not in page


def test_a_damaged_file_is_named_never_shown(studio):
    url, _ = studio
    assert _status(url + "/builds/c3") == 409
    assert _status(url + "/builds/c3/files/report/report.html") == 409
    body = urllib.request.urlopen(url + "/builds/a1/files/report/report.html", timeout=10)
    assert body.read() == b"<html><body>report</body></html>" and "sandbox" in body.headers["Content-Security-Policy"]
    try:
        urllib.request.urlopen(url + "/builds/c3", timeout=10)
    except urllib.error.HTTPError as exc:
        page = exc.read().decode()
    assert "report.html (sha256 differs from the manifest)" in page and "tampered" not in page


def test_a_read_only_studio_refuses_to_promote_and_the_registry_is_unchanged(studio):
    url, store = studio
    assert _status(url + "/builds/a1/promote", data=b"csrf=x", headers={"Origin": url}) == 403
    assert not store.exists(keys.CURRENT_KEY)


def test_requests_for_another_host_name_are_refused(studio):
    url, _ = studio
    assert _status(url + "/", headers={"Host": "attacker.example:80"}) == 421
    assert _status(url + "/chat/load", data=b'{"tags": ["a1"], "csrf": "x"}',
                   headers={"Origin": "http://attacker.example", "Content-Type": "application/json"}) == 403


def test_spec_differences_are_every_differing_leaf():
    a = {"train": {"max_steps": 12, "lora": {"r": 16}}, "eval": {"suite": "x"}}
    b = {"train": {"max_steps": 4, "lora": {"r": 16}}, "curate": {"k": 1}}
    assert spec_diff(a, b) == [("curate", "null", '{"k": 1}'), ("eval", '{"suite": "x"}', "null"),
                               ("train.max_steps", "12", "4")]


def test_loss_curves_overlay_one_polyline_per_build():
    svg = str(loss_svg({"a": [(1, 2.0), (2, 1.5)], "b": [(1, 2.1)], "c": []}))
    assert svg.count("<polyline") == 2 and 'data-name="a" data-points="2"' in svg
    assert "no training loss" in str(loss_svg({"a": []}))


def test_the_studio_without_a_chat_imports_no_torch(studio):
    _, store = studio
    code = ("import sys; from pathlib import Path; from jobs.core.store.backends import open_store; "
            "from jobs.studio.app import make_app; from jobs.studio import records as data; s = open_store(sys.argv[1]); "
            "make_app(s, Path(sys.argv[1])); data.build_rows(s); data.build_detail(s, 'a1'); data.compare(s, 'a1', 'b2');"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code, store.url], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_what_the_pages_show_reads_either_store_kind(store):
    from jobs.studio import records as data

    for tag, recall in (("a1", 0.2), ("b2", 0.6)):
        commit_fake_build(store, tag, {**SPEC, "train": {"max_steps": 4 if tag == "b2" else 12}}, _files(recall))
    rows = {r["tag"]: r for r in data.build_rows(store)}
    assert rows["b2"]["headline"]["concept_recall"]["interval"] == "[0.500, 0.700]"
    assert data.build_detail(store, "a1")["damaged"] == []
    assert ("train.max_steps", "12", "4") in data.compare(store, "a1", "b2")["spec"]
