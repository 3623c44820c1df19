"""The OpenAI-compatible server on a free loopback port, driven by the official `openai` client."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from jobs.core.engine.generation import Sampling
from tests.serve.conftest import QUESTION, check_a_dropped_client_frees_its_row, start_api

pytestmark = pytest.mark.slow
USER = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def server(smoke_store, tmp_path_factory):
    """`python -m jobs.serve.api --tag smoke,smoke-loud` on a free port; yields its base URL."""
    log = tmp_path_factory.mktemp("api") / "server.log"
    proc, url = start_api(smoke_store, log)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=300)


def _expected(smoke_engine, adapter, sampling, messages=USER) -> str:
    engine, _ = smoke_engine
    return engine.chat([messages], adapter, sampling)[0].text


def test_models_are_the_build_tags_with_their_gate_status(client):
    models = {m.id: m for m in client.models.list()}
    assert list(models) == ["smoke", "smoke-loud", "base"]
    assert models["smoke"].model_extra["status"] == "passed"
    assert models["smoke-loud"].model_extra["status"] == "failed-gate"
    assert models["smoke"].owned_by == "quantum-slm"
    assert models["base"].model_extra["status"] == "base" and models["base"].model_extra["asked_as"] == "smoke"


def test_base_answers_as_the_engine_does_without_an_adapter(client, smoke_engine):
    sampled = Sampling(max_new_tokens=12, temperature=1.0, seed=3)  # greedy, the tiny base answers blank
    answer = client.chat.completions.create(model="base", messages=USER, max_tokens=12, temperature=1.0, seed=3)
    assert answer.model == "base" and answer.choices[0].message.content == _expected(smoke_engine, None, sampled)
    loud = client.chat.completions.create(model="smoke-loud", messages=USER, max_tokens=12, temperature=1.0, seed=3)
    assert answer.choices[0].message.content != loud.choices[0].message.content


def test_a_plain_and_a_streamed_completion(client, smoke_engine):
    answer = client.chat.completions.create(model="smoke", messages=USER, max_tokens=12)
    expected = _expected(smoke_engine, "smoke", Sampling(max_new_tokens=12))
    assert answer.choices[0].message.content == expected and answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == 12 and answer.usage.prompt_tokens > 10
    chunks = list(client.chat.completions.create(model="smoke", messages=USER, max_tokens=12, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 12 and chunks[-1].usage.prompt_tokens == answer.usage.prompt_tokens


def test_a_stream_on_the_wire_is_openais_chunks_as_server_sent_events(server, smoke_engine):
    """Each event is `data: <JSON>` with the keys protocol.chunk gives, one id and one `created` for the stream, then
    [DONE]; the headers keep caches and proxies from holding the stream back."""
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/v1/chat/completions", json.dumps(
        {"model": "smoke", "messages": USER, "max_tokens": 12, "stream": True,
         "stream_options": {"include_usage": True}}), {"content-type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("content-type") == "text/event-stream; charset=utf-8"
    assert response.getheader("cache-control") == "no-store" and response.getheader("x-accel-buffering") == "no"
    events = response.read().decode().split("\r\n\r\n")
    conn.close()
    assert events[-2:] == ["data: [DONE]", ""] and all(e.startswith("data: ") for e in events[:-1])
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(list(c) == ["id", "object", "created", "model", "choices"] for c in chunks[:-1])
    assert list(chunks[-1]) == ["id", "object", "created", "model", "choices", "usage"] and chunks[-1]["choices"] == []
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        (chunks[0]["id"], chunks[0]["created"], "smoke", "chat.completion.chunk")}
    assert chunks[0]["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None,
                                     "logprobs": None}]
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length", "logprobs": None}]
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks[1:-2])
    assert text == _expected(smoke_engine, "smoke", Sampling(max_new_tokens=12))


def test_two_tags_share_one_base_and_switch_adapters_per_request(client, smoke_engine):
    answers = [(tag, client.chat.completions.create(model=tag, messages=USER, max_tokens=16).choices[0].message.content)
               for tag in ("smoke", "smoke-loud", "smoke")]
    greedy = Sampling(max_new_tokens=16)
    assert answers == [(tag, _expected(smoke_engine, tag, greedy)) for tag in ("smoke", "smoke-loud", "smoke")]
    assert answers[0][1] != answers[1][1]  # the loud adapter answers differently: the switch is visible


def test_sampling_options_are_honoured(client, smoke_engine):
    first = client.chat.completions.create(model="smoke", messages=USER, max_tokens=16, temperature=1.0, seed=5,
                                           top_p=0.9)
    again = client.chat.completions.create(model="smoke", messages=USER, max_tokens=16, temperature=1.0, seed=5,
                                           top_p=0.9)
    assert first.choices[0].message.content == again.choices[0].message.content  # same seed, same text
    text = first.choices[0].message.content
    cut = next(ch for ch in text[3:] if not ch.isspace())  # a character the answer really contains
    ended = client.chat.completions.create(model="smoke", messages=USER, max_tokens=16, temperature=1.0, seed=5,
                                           top_p=0.9, stop=[cut])
    assert ended.choices[0].finish_reason == "stop" and cut not in ended.choices[0].message.content
    assert text.startswith(ended.choices[0].message.content)


def test_concurrent_requests_are_all_answered(client, smoke_engine):
    def call(i):
        tag = ("smoke", "smoke-loud")[i % 2]
        if i % 3 == 0:
            stream = client.chat.completions.create(model=tag, messages=USER, max_tokens=8, stream=True)
            return tag, "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        return tag, client.chat.completions.create(model=tag, messages=USER, max_tokens=8).choices[0].message.content

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(call, range(12)))
    expected = {tag: _expected(smoke_engine, tag, Sampling(max_new_tokens=8)) for tag in ("smoke", "smoke-loud")}
    assert results == [(tag, expected[tag]) for tag, _ in results]


def test_bad_requests_get_openai_shaped_errors(client, server):
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="smoke", messages=[])
    assert bad.value.body["param"] == "messages" and bad.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError, match="this server serves smoke, smoke-loud, base"):
        client.chat.completions.create(model="gpt-4o", messages=USER)
    with pytest.raises(openai.BadRequestError, match="context_length_exceeded|more than the model's 2048"):
        client.chat.completions.create(model="smoke", messages=USER, max_tokens=5000)
    request = urllib.request.Request(server + "/v1/chat/completions", data=b'{"model": "smoke", "messages": [',
                                     headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(request)
    assert raw.value.code == 400
    body = json.loads(raw.value.read())
    assert set(body["error"]) == {"message", "type", "param", "code"} and "not valid JSON" in body["error"]["message"]


def test_a_dropped_client_frees_its_slot(client, server):
    check_a_dropped_client_frees_its_row(client, server)
