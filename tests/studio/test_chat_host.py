"""The studio's chat without a model (app tier, FastAPI's TestClient): ChatHost loads the builds and their indexes as
serve's entry point does and hands /v1/ to serve's own app over the fault tier's stand-in engine, so `base` and a
request's `retrieval` reach the serve routes, and the cited passages come back beside the answer."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from jobs.core.retrieval import hybrid
from jobs.core.retrieval.hybrid import write_index
from jobs.core.store.backends import open_store
from jobs.serve import builds as serve_builds
from jobs.studio.app import make_app
from tests.core.retrieval.test_hybrid import ROWS, bag_embed
from tests.faults.fake_server import CharTokenizer
from tests.serve.conftest import ADAPTER_FILES, commit_fake_build
from tests.serve.test_base import RecordingEngine

QUESTION = [{"role": "user", "content": "What does depolarizing noise do?"}]


@pytest.fixture
def chat(tmp_path, monkeypatch, smoke_spec):
    """(client, the engines ChatHost loaded, its CSRF token) over `indexed` (a retrieval index) and `plain`."""
    monkeypatch.setenv("QSLM_CACHE", str(tmp_path / "cache"))
    store = open_store(str(tmp_path / "store"))
    spec = json.loads(json.dumps(smoke_spec.to_dict()))
    write_index(ROWS, tmp_path / "index", {"minilm": bag_embed})
    index = {p.relative_to(tmp_path / "index").as_posix(): p.read_bytes()
             for p in sorted((tmp_path / "index").rglob("*")) if p.is_file()}
    commit_fake_build(store, "indexed", {**spec, "retrieval": {"embedders": ["minilm"], "k": 2, "default": "on"}},
                      {"adapter": ADAPTER_FILES, "index": index})
    commit_fake_build(store, "plain", spec, {"adapter": ADAPTER_FILES})
    engines = []

    def stand_in(builds, device="auto", batch_size=8):
        engines.append(RecordingEngine([b.tag for b in builds]))
        return engines[-1]
    monkeypatch.setattr(serve_builds, "load_engine", stand_in)
    monkeypatch.setattr("jobs.core.engine.loading.load_tokenizer", lambda folder: CharTokenizer())
    monkeypatch.setattr(hybrid, "load_query_embedder", lambda name: bag_embed)  # MiniLM's place, as in its tests
    app = make_app(store, tmp_path / "work")
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        token = re.search(r'id="csrf" value="([^"]+)"', client.get("/chat").text).group(1)
        yield client, engines, token
    app.host.stop()


def _stream(client, **body) -> tuple[str, list | None]:
    """(the streamed answer, the sources of its first chunk) of a streamed request through the studio's /v1/."""
    r = client.post("/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 8, "stream": True, **body})
    assert r.status_code == 200, r.text
    chunks = [json.loads(line[5:]) for line in r.text.splitlines()
              if line.startswith("data:") and line[5:].strip() != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks), chunks[0]["choices"][0].get("sources")


def test_the_chat_page_offers_base_and_a_switch_for_builds_with_an_index(chat):
    client, _, _ = chat
    html = client.get("/chat").text
    assert '<option value="base">base (no adapter)</option>' in html
    assert re.search(r'<option value="indexed" data-index="1" data-retrieval="1"', html)
    assert re.search(r'<option value="plain" data-index="" data-retrieval=""', html)
    assert 'id="retrieval-switch" hidden' in html  # shown by the script when a chosen build has an index


def test_base_and_retrieval_reach_serve_through_the_studio(chat):
    client, engines, token = chat
    assert client.post("/v1/chat/completions", json={"model": "base", "messages": QUESTION}).status_code == 503
    loaded = client.post("/chat/load", json={"tags": ["indexed", "plain"], "csrf": token}).json()
    assert loaded["loaded"] and loaded["tags"] == ["indexed", "plain"]
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert list(models) == ["indexed", "plain", "base"] and models["base"]["asked_as"] == "indexed"
    engine = engines[-1]

    text, sources = _stream(client, model="base", retrieval=True)  # base + retrieval: eval's base arm with passages
    assert text == "an answer" and engine.asked[-1][0] is None
    assert sources[0]["id"] == "doc.md#noise#p0" and sources[0]["file"] == "doc.md"
    assert sources[0]["section"] == "Noise" and sources[0]["paragraph_ids"] == ["doc.md#noise#p0"]
    assert "Passages:\n[1] doc.md > Noise" in engine.asked[-1][1]

    text, sources = _stream(client, model="indexed", retrieval=False)
    assert sources is None and engine.asked[-1][0] == "indexed" and "Passages:" not in engine.asked[-1][1]
    _, sources = _stream(client, model="indexed")  # the field left out: the build's spec says on
    assert sources and engine.asked[-1][0] == "indexed"
    text, sources = _stream(client, model="plain")
    assert text == "an answer" and sources is None and engine.asked[-1][0] == "plain"
    refused = client.post("/v1/chat/completions", json={"model": "plain", "messages": QUESTION, "retrieval": True})
    assert refused.status_code == 400 and "no retrieval index" in refused.json()["error"]["message"]


def test_base_is_asked_as_the_first_build_so_another_first_reloads(chat):
    client, engines, token = chat
    client.post("/chat/load", json={"tags": ["indexed", "plain"], "csrf": token})
    again = client.post("/chat/load", json={"tags": ["indexed"], "csrf": token}).json()
    assert not again["loaded"] and len(engines) == 1  # a subset with the same first build: nothing reloads
    swapped = client.post("/chat/load", json={"tags": ["plain"], "csrf": token}).json()
    assert swapped["loaded"] and len(engines) == 2
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert list(models) == ["plain", "base"] and models["base"]["asked_as"] == "plain"
    _, sources = _stream(client, model="base")  # as plain is asked: no index, so no passages
    assert sources is None and "Passages:" not in engines[-1].asked[-1][1]


def test_a_load_without_the_token_is_refused(chat):
    client, engines, _ = chat
    r = client.post("/chat/load", json={"tags": ["plain"], "csrf": "guess"})
    assert r.status_code == 403 and "token" in r.text and not engines
