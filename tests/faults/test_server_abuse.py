"""The HTTP server under abuse, on its socket: bodies bounded before they are read (413), ambiguous framing refused
and the connection closed (no smuggled second request answered), oversized headers refused, every field checked
before the engine, fields it cannot honour refused by name, the API key, /health and the request log. The
server is the real one (make_app behind the guard, run_http's uvicorn settings) over a stand-in engine
(tests/faults/fake_server.py); after all of it, it still answers and never logged a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.serve.guard import MAX_BODY_BYTES
from tests.conftest import free_port, wait_for
from tests.faults.harness import FIGURES, REPO

KEY = "k" * 24
CHAT = {"model": "smoke", "messages": [{"role": "user", "content": "What is a quantum kernel?"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("abuse") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.faults.fake_server", str(port)], cwd=REPO,
                                env={**os.environ, "QSLM_API_KEY": KEY}, stdout=out, stderr=subprocess.STDOUT)

    def up() -> bool:
        try:
            return b"200 OK" in _exchange(port, _request("GET", "/health"))
        except OSError:
            return False
    if not wait_for(lambda: proc.poll() is not None or up(), 120, poll=0.3) or proc.poll() is not None:
        proc.kill()
        pytest.fail(f"the server did not start:\n{log.read_text()[-3000:]}")
    yield port, proc, log
    proc.terminate()
    proc.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def _request(method: str, path: str, body: bytes = b"", headers: dict | None = None, key: str | None = KEY) -> bytes:
    head = {"Host": "127.0.0.1", "Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key
                                                                         else {})}
    if body or method == "POST":
        head["Content-Length"] = str(len(body))
    head.update(headers or {})
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items() if v is not None)
    return f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode() + body


def _exchange(port: int, data: bytes, wait_s: float = 10) -> bytes:
    """Send `data`, read until the server closes the connection or goes quiet for wait_s."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        s.sendall(data)
        return _read_all(s)


def _read_all(s: socket.socket) -> bytes:
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return got


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _json_body(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def _chat(port: int, body: dict, **kw) -> bytes:
    return _exchange(port, _request("POST", "/v1/chat/completions", json.dumps(body).encode(), {"Connection": "close"},
                                    **kw))


def _rss_kib(proc) -> int:
    return int(next(line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                    if line.startswith("VmRSS")).split()[1])


def test_a_50_mb_body_is_refused_before_it_is_read(server):
    port, proc, _ = server
    before = _rss_kib(proc)
    head = _request("POST", "/v1/chat/completions", headers={"Content-Length": str(50 << 20)})
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + b'{"model": "smoke", "messages": [' + b" " * (1 << 20))
        started = time.perf_counter()
        answer = _read_all(s)
    assert _status(answer) == 413 and time.perf_counter() - started < 5
    assert "more than the 1,048,576 bytes" in _json_body(answer)["error"]["message"]
    assert _rss_kib(proc) - before < 20 * 1024  # KiB: nothing like the body was held
    FIGURES["server abuse cases"] += 1


def test_a_chunked_body_is_cut_at_the_bound(server):
    port, proc, _ = server
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range((MAX_BODY_BYTES >> 16) + 4))
    answer = _exchange(port, _request("POST", "/v1/chat/completions", headers={
        "Content-Length": None, "Transfer-Encoding": "chunked"}) + body + b"0\r\n\r\n")
    assert _status(answer) == 413 and answer.count(b"HTTP/1.1") == 1
    FIGURES["server abuse cases"] += 1


@pytest.mark.parametrize("te", ["chunked", "gzip, chunked", "Chunked"])
def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(server, te):
    port, _, _ = server
    smuggled = _request("GET", "/v1/models")
    inner = json.dumps(CHAT).encode()
    chunked = b"%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n"
    first = _request("POST", "/v1/chat/completions", chunked, {"Content-Length": str(len(chunked)),
                                                                "Transfer-Encoding": te})
    started = time.perf_counter()
    answer = _exchange(port, first + smuggled)
    assert time.perf_counter() - started < 5  # the server closed the connection (else: the 10 s read timeout)
    assert answer.count(b"HTTP/1.1 ") == 1, answer  # the smuggled request got no answer
    assert _status(answer) == 400 and b"connection: close" in answer.lower()
    if te == "chunked" or te == "Chunked":  # h11 itself refuses a coding it does not know, in plain text
        assert "Content-Length and Transfer-Encoding" in _json_body(answer)["error"]["message"]
    FIGURES["server abuse cases"] += 1


def test_oversized_or_countless_headers_are_refused(server):
    port, _, _ = server
    for headers in ({"X-Big": "a" * (64 << 10)}, {f"X-H{i}": "v" * 20 for i in range(2000)}):
        answer = _exchange(port, _request("GET", "/health", headers=headers))
        assert answer == b"" or _status(answer) in (400, 413, 431), answer[:200]
        FIGURES["server abuse cases"] += 1


@pytest.mark.parametrize("field, value, status, expected", [
    ("seed", 10**30, 400, "seed: Input should be less than or equal to 18446744073709551615"),
    ("max_tokens", 10**12, 400, "max_tokens: Input should be less than or equal to 32768"),
    ("temperature", -1, 400, "temperature:"),
    ("logprobs", True, 400, "logprobs: this server does not return log-probabilities"),
    ("top_logprobs", 3, 400, "top_logprobs:"),
    ("response_format", {"type": "json_object"}, 400, "response_format: this server answers in plain text only"),
    ("messages", CHAT["messages"] * 1025, 400, "messages:"),
    ("logprobs", False, 200, None),
    ("user", "someone", 200, None),
    ("response_format", {"type": "text"}, 200, None),
])
@pytest.mark.parametrize("stream", [False, True])
def test_every_field_is_checked_before_the_engine(server, field, value, status, expected, stream):
    port, _, _ = server
    answer = _chat(port, {**CHAT, field: value, "stream": stream})
    assert _status(answer) == status, answer[:400]
    if expected:
        error = _json_body(answer)["error"]
        assert expected in error["message"] and error["param"] == field
    FIGURES["server abuse cases"] += 1


def test_messages_plainly_over_the_context_are_refused_without_tokenizing(server):
    port, _, _ = server
    answer = _chat(port, {**CHAT, "messages": [{"role": "user", "content": "x" * 900_000}]})
    assert _status(answer) == 400 and _json_body(answer)["error"]["code"] == "context_length_exceeded"
    assert "900,000 characters" in _json_body(answer)["error"]["message"]


def test_a_nan_in_the_body_is_refused(server):
    port, _, _ = server
    body = json.dumps(CHAT)[:-1] + ', "temperature": NaN}'
    answer = _exchange(port, _request("POST", "/v1/chat/completions", body.encode(), {"Connection": "close"}))
    assert _status(answer) == 400 and "finite number" in _json_body(answer)["error"]["message"]


def test_the_api_key_is_required_except_for_health(server):
    port, _, _ = server
    assert _status(_chat(port, CHAT, key=None)) == 401
    wrong = _chat(port, CHAT, key="x" * 24)
    assert _status(wrong) == 401 and _json_body(wrong)["error"]["code"] == "invalid_api_key"
    assert _status(_exchange(port, _request("GET", "/v1/models", headers={"Connection": "close"}, key=None))) == 401
    health = _exchange(port, _request("GET", "/health", headers={"Connection": "close"}, key=None))
    assert _status(health) == 200 and _json_body(health)["models"] == ["smoke", "base"]
    assert _status(_chat(port, CHAT)) == 200


def test_each_request_is_logged_and_the_server_still_answers(server):
    port, _, log = server
    answer = _chat(port, {**CHAT, "max_tokens": 7})
    assert _status(answer) == 200 and _json_body(answer)["choices"][0]["message"]["content"] == "an answer"
    streamed = _chat(port, {**CHAT, "stream": True})
    assert _status(streamed) == 200 and b"data: [DONE]" in streamed
    time.sleep(0.3)
    lines = [line for line in log.read_text().splitlines() if line.startswith("serve: POST /v1/chat/completions")]
    assert any("model=smoke status=200 tokens=" in line and "+2 time=" in line for line in lines)
    assert any("status=200" in line and "+2 time=" in line for line in lines)  # the streamed one (the stand-in answers in 2 tokens either way)
    assert any("status=413" in line for line in log.read_text().splitlines())


def test_off_loopback_without_a_key_the_server_refuses_to_start(capsys, monkeypatch):
    from jobs.serve import api

    monkeypatch.delenv("QSLM_API_KEY", raising=False)
    for host in ("0.0.0.0", "192.168.1.5", "myhost.example", "::"):
        assert api.main(["--host", host]) == 2
        assert "is not loopback" in capsys.readouterr().err
    monkeypatch.setenv("QSLM_API_KEY", "short")
    assert api.main(["--host", "0.0.0.0"]) == 2 and "use at least 16" in capsys.readouterr().err
    assert api.main(["--port", "70000"]) == 2 and "--port 70000 is outside" in capsys.readouterr().err
