"""What an OpenAI-compatible writer sends back is checked and bounded: a truncated or wrongly shaped answer is one
error naming the endpoint (retried only when a retry can help), a runaway reply is read only up to the bound, and
a malformed reply is never cached as a success: the next run with a working endpoint asks again."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jobs.core.store import keys
from jobs.core.store.backends import open_store
from jobs.synthesize.cache import GenerationCache
from jobs.synthesize.filters import malformed
from jobs.core.engine.writers import MAX_REPLY_BYTES, OVERSIZED, OpenAIWriter, Request, WriterError
from tests.synthesize.conftest import synth_spec

QA = json.dumps({"question": "What does the text say about noise?", "answer": "Noise grows with depth."})


def completion(content) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": content}}]}).encode()


class RawEndpoint:
    """Answers every POST with `body` (bytes) and status 200; counts the requests."""

    def __init__(self):
        self.body, self.requests, self.missing = completion(QA), 0, 0  # missing: bytes promised, never sent
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body) + outer.missing))
                self.end_headers()
                try:
                    self.wfile.write(outer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the writer stopped reading at its bound

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def raw():
    e = RawEndpoint()
    yield e
    e.server.shutdown()
    e.server.server_close()


def _requests(n=3) -> list[Request]:
    return [Request([{"role": "user", "content": f"Write a question {i}"}], (), 0.7, 0.95, 64, i, "p" * 64, "qa")
            for i in range(n)]


def _writer(smoke_spec, url) -> OpenAIWriter:
    return OpenAIWriter(synth_spec(smoke_spec, url))


@pytest.mark.parametrize("body, expected", [
    (b'{"id": "x", "choices": [{"message": {"content": "{\\"question', "failed 3 times .*a reply of 60 bytes that are not JSON"),
    (b"<html>502 Bad Gateway</html>", "failed 3 times .*not JSON"),
    (b'{"choices": "none"}', "answered with JSON that is not a chat completion: no choices list"),
    (b'{"choices": []}', "not a chat completion: no choices list"),
    (b'{"choices": [{"message": {"content": 5}}]}', "choices\\[0\\].message.content is not text"),
    (b'[1, 2, 3]', "not a chat completion"),
    (b'{"object": "list", "data": []}', "not a chat completion"),
])
def test_a_truncated_or_wrongly_shaped_answer_is_one_error_naming_the_endpoint(smoke_spec, raw, tmp_path, body,
                                                                                 expected):
    raw.body = body
    cache = GenerationCache(open_store(str(tmp_path / "store")), "openai:scripted@unpinned")
    with pytest.raises(WriterError, match=expected) as err:
        cache.replies(_requests(1), _writer(smoke_spec, raw.url))
    assert f"writer endpoint {raw.url}" in str(err.value) and "\n" not in str(err.value)
    assert raw.requests == (3 if "failed 3 times" in expected else 1)  # a wrong shape is not retried
    assert cache.store.list("cache/") == []


def test_a_reply_cut_off_mid_body_is_retried_then_named(smoke_spec, raw, tmp_path):
    raw.missing = 500
    cache = GenerationCache(open_store(str(tmp_path / "store")), "openai:scripted@unpinned")
    with pytest.raises(WriterError, match=f"writer endpoint {raw.url} .* failed 3 times .*the reply broke off"):
        cache.replies(_requests(1), _writer(smoke_spec, raw.url))
    assert raw.requests == 3


def test_a_runaway_reply_is_read_only_up_to_the_bound_and_kept_as_malformed(smoke_spec, raw, tmp_path):
    raw.body = completion("x" * (20 << 20))
    writer = _writer(smoke_spec, raw.url)
    assert writer._once(_requests(1)[0]) == OVERSIZED
    store = open_store(str(tmp_path / "store"))
    cache = GenerationCache(store, writer.name)
    replies, asked = cache.replies(_requests(), writer)
    assert replies == [OVERSIZED] * 3 and asked == 3 and cache.malformed == 3
    for key in store.list("cache/"):
        record = json.loads(store.get_bytes(key))
        assert record["malformed"] is True and len(key) < 200 and len(store.get_bytes(key)) < MAX_REPLY_BYTES


def test_malformed_replies_are_asked_again_once_the_endpoint_works(smoke_spec, raw, tmp_path):
    store = open_store(str(tmp_path / "store"))
    writer = _writer(smoke_spec, raw.url)
    raw.body = completion("Sure! Here is a question: what is noise?")  # not the JSON asked for
    replies, asked = GenerationCache(store, writer.name).replies(_requests(), writer)
    assert asked == 3 and all(malformed(r, x) for r, x in zip(_requests(), replies))
    raw.body = completion(QA)  # the endpoint is fixed
    replies, asked = GenerationCache(store, writer.name).replies(_requests(), writer)
    assert asked == 3 and replies == [QA] * 3
    raw.requests = 0
    replies, asked = GenerationCache(store, writer.name).replies(_requests(), writer)
    assert asked == 0 and replies == [QA] * 3 and raw.requests == 0  # good replies are reused


def test_an_over_long_reply_inside_the_byte_bound_is_cut_before_caching(smoke_spec, raw, tmp_path):
    store = open_store(str(tmp_path / "store"))
    writer = _writer(smoke_spec, raw.url)
    raw.body = completion("y" * 100_000)  # 64 new tokens cannot honestly be 100,000 characters
    replies, _ = GenerationCache(store, writer.name).replies(_requests(1), writer)
    assert replies == [OVERSIZED]
    (key,) = store.list("cache/")
    assert json.loads(store.get_bytes(key))["reply"] == OVERSIZED


def test_a_damaged_cache_entry_is_asked_again(smoke_spec, raw, tmp_path):
    store = open_store(str(tmp_path / "store"))
    writer = _writer(smoke_spec, raw.url)
    GenerationCache(store, writer.name).replies(_requests(1), writer)
    (key,) = store.list("cache/")
    store.put_bytes(key, b'{"reply": ')
    raw.requests = 0
    replies, asked = GenerationCache(store, writer.name).replies(_requests(1), writer)
    assert asked == 1 and raw.requests == 1 and replies == [QA]
    assert key.startswith(keys.synthesis_cache_prefix(GenerationCache(store, writer.name).slug))
