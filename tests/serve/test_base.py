"""The base model beside the builds (`base` in /v1/models): answered without an adapter, asked as the first build is
(its system prompt, its retrieval index), through the real routes (make_app behind the guard, the worker's
continuous batch) over the fault tier's stand-in engine, driven by the official `openai` client."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path

import openai
import pytest
from fastapi.testclient import TestClient

from jobs.core.retrieval.hybrid import Index, write_index
from jobs.serve import ServeError
from jobs.serve.api import make_app
from jobs.serve.builds import Build, check_not_base
from jobs.serve.protocol import BASE_MODEL
from jobs.serve.retrieval import Retriever
from jobs.serve.worker import Worker
from tests.core.retrieval.test_hybrid import ROWS, bag_embed
from tests.faults.fake_server import CONTEXT_TOKENS, AnsweringDecoder, AnsweringEngine, CharTokenizer

USER = [{"role": "user", "content": "What does depolarizing noise do?"}]


class RecordingEngine(AnsweringEngine):
    """The stand-in engine, noting each request's adapter and prompt (as text) as the batch hands them over."""

    path, path_note, base_dir = "stand-in", "answers at once", Path("/stand-in")

    def __init__(self, adapters=("first", "second")):
        self.adapters = tuple(adapters)
        self.asked: list[tuple[str | None, str]] = []

    def decoder(self, rows: int, tokens: int):
        engine, decoder = self, AnsweringDecoder(rows, tokens)
        add = decoder.add

        def recording_add(prompt, adapter, sampling):
            engine.asked.append((adapter, "".join(map(chr, prompt))))
            return add(prompt, adapter, sampling)
        decoder.add = recording_add
        return decoder


def _build(spec, tag: str, system: str) -> Build:
    spec = dataclasses.replace(spec, curate=dataclasses.replace(spec.curate, system_prompt=system))
    manifest = {"created_at": datetime.now(timezone.utc).isoformat(), "status": "passed"}
    return Build(tag=tag, manifest=manifest, spec=spec, folder=Path("/nonexistent"))


@pytest.fixture
def served(smoke_spec, tmp_path):
    """(openai client, the engine, TestClient) over builds `first` (with an index) and `second`."""
    write_index(ROWS, tmp_path / "index", {"minilm": bag_embed})
    retriever = Retriever(Index.load(tmp_path / "index", {"minilm": bag_embed}), k=2, default=False)
    builds = {"first": _build(smoke_spec, "first", "Answer as the first."),
              "second": _build(smoke_spec, "second", "Answer as the second.")}
    engine = RecordingEngine()
    worker = Worker(engine, 8, 4)
    worker.start()
    app = make_app(builds, worker, CharTokenizer(), CONTEXT_TOKENS, retrievers={"first": retriever},
                   log=lambda line: None)
    with TestClient(app) as http:
        yield openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http, max_retries=0), \
            engine, http
    worker.stop()


def test_base_is_listed_beside_the_tags_and_says_which_build_it_is_asked_as(served):
    client, _, http = served
    models = {m.id: m for m in client.models.list()}
    assert list(models) == ["first", "second", BASE_MODEL]
    assert models[BASE_MODEL].model_extra["status"] == "base"
    assert models[BASE_MODEL].model_extra["asked_as"] == "first"
    assert models[BASE_MODEL].model_extra["base_model"] == models["first"].model_extra["base_model"]
    assert http.get("/health").json()["models"] == ["first", "second", BASE_MODEL]


def test_base_answers_without_an_adapter_with_the_first_builds_system_prompt(served):
    client, engine, _ = served
    for model in ("second", BASE_MODEL):
        answer = client.chat.completions.create(model=model, messages=USER, max_tokens=8)
        assert answer.model == model and answer.choices[0].message.content == "an answer"
    (adapter, prompt), (base_adapter, base_prompt) = engine.asked
    assert adapter == "second" and "Answer as the second." in prompt
    assert base_adapter is None and base_prompt.startswith("<system>Answer as the first.<user>What does")


def test_base_streams_and_answers_from_the_first_builds_index_with_its_sources(served):
    client, engine, http = served
    chunks = list(client.chat.completions.create(model=BASE_MODEL, messages=USER, max_tokens=8, stream=True,
                                                 extra_body={"retrieval": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "an answer"
    sources = chunks[0].choices[0].model_extra["sources"]  # beside the first delta, as for a build
    assert sources[0]["id"] == "doc.md#noise#p0" and {"file", "section", "paragraph_ids"} <= set(sources[0])
    adapter, prompt = engine.asked[-1]
    assert adapter is None and "Passages:\n[1] doc.md > Noise\nDepolarizing noise" in prompt
    plain = client.chat.completions.create(model=BASE_MODEL, messages=USER, max_tokens=8,
                                           extra_body={"retrieval": False})
    assert "sources" not in plain.choices[0].model_extra and "Passages:" not in engine.asked[-1][1]
    body = http.post("/v1/chat/completions", json={"model": "second", "messages": USER, "retrieval": True}).json()
    assert body["error"]["param"] == "retrieval" and "no retrieval index" in body["error"]["message"]


def test_an_unknown_model_names_base_among_the_models(served):
    client, _, _ = served
    with pytest.raises(openai.NotFoundError, match="this server serves first, second, base"):
        client.chat.completions.create(model="gpt-4o", messages=USER)


def test_a_build_tagged_base_is_refused_before_loading(smoke_spec):
    with pytest.raises(ServeError, match="build 'base' cannot be served.*publish the build under another tag"):
        check_not_base([_build(smoke_spec, "first", ""), _build(smoke_spec, BASE_MODEL, "")])
    check_not_base([_build(smoke_spec, "first", "")])  # any other tag is served as it is
