"""What stands between the network and the routes: bounds, framing, the API key, and one log line per request.

    app = Guard(fastapi_app, api_key=os.environ.get("QSLM_API_KEY"))      # make_app does this

A pure ASGI middleware, so it sees each request before any body is read:
- a body is bounded before it is read: a Content-Length over MAX_BODY_BYTES is answered 413 at once, and a chunked
  body is read into memory only up to that bound (it is buffered here, then handed to the routes);
- a request that carries both Content-Length and Transfer-Encoding is refused (400) and its connection closed:
  RFC 9112 section 6.3 says such a message may be an attempt at request smuggling, and that a server which reads
  it anyway must close the connection after answering; h11 lets Transfer-Encoding win and keeps the connection,
  so a second, smuggled request on it would be answered;
- headers are bounded (MAX_HEADERS, MAX_HEADER_BYTES: 431), and the count of messages by the request model
  (protocol.MAX_MESSAGES);
- with an API key, every route but /health needs `Authorization: Bearer <key>` (401 otherwise); api.main refuses to
  listen on anything but loopback without one;
- one log line per request: method, path, model, status, prompt and completion tokens, seconds.
"""

from __future__ import annotations

import hmac
import json
import sys
import time

from jobs.serve.protocol import error_body

MAX_BODY_BYTES = 1 << 20  # 1 MiB: the model's whole context (32,768 tokens, ~130 kB of text) JSON-escaped, 4x over
# Headers: h11 refuses a header section still incomplete past MAX_HEADER_BYTES, so what it holds is bounded by that
# plus one socket read (64 KiB); the guard then applies the exact bounds to what arrived.
MAX_HEADER_BYTES = 16 << 10  # names and values together
MAX_HEADERS = 100
OPEN_PATHS = ("/health",)  # answered without the API key: a load balancer or a Kubernetes probe has none


def log_line(method: str, path: str, status: int, seconds: float, info: dict) -> str:
    tokens = f"{info['prompt_tokens']}+{info.get('completion_tokens', 0)}" if "prompt_tokens" in info else "-"
    return (f"serve: {method} {path} model={info.get('model', '-')} status={status} tokens={tokens} "
            f"time={seconds:.3f}s")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Guard:
    def __init__(self, app, api_key: str | None = None, max_body: int = MAX_BODY_BYTES, log=_stderr):
        self.app, self.api_key, self.max_body, self.log = app, api_key, max_body, log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [0]
        info = scope.setdefault("state", {}).setdefault("qslm_log", {})

        async def send_logged(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        try:
            await self._guarded(scope, receive, send_logged)
        finally:
            self.log(log_line(scope["method"], scope["path"], status[0], time.perf_counter() - started, info))

    async def _guarded(self, scope, receive, send):
        if len(scope["headers"]) > MAX_HEADERS or sum(len(n) + len(v) for n, v in scope["headers"]) > MAX_HEADER_BYTES:
            return await _refuse(send, 431, f"the request has {len(scope['headers'])} headers; at most {MAX_HEADERS} "
                                 f"headers of {MAX_HEADER_BYTES:,} bytes in all are read", "headers_too_large")
        headers: dict[bytes, list[bytes]] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), []).append(value)
        if b"transfer-encoding" in headers and b"content-length" in headers:
            return await _refuse(send, 400, "the request has both Content-Length and Transfer-Encoding; send one "
                                 "(RFC 9112 section 6.3); this connection is closed", "ambiguous_framing")
        if self.api_key and scope["path"] not in OPEN_PATHS and not self._authorised(headers):
            return await _refuse(send, 401, "this server needs an API key: send `Authorization: Bearer <key>` "
                                 "(the key in the server's QSLM_API_KEY)", "invalid_api_key",
                                 type_="authentication_error")
        lengths = headers.get(b"content-length", [])
        try:
            declared = int(lengths[0]) if lengths else None
        except ValueError:
            declared = -1
        if len(set(lengths)) > 1 or (declared is not None and declared < 0):
            return await _refuse(send, 400, "the Content-Length header is not one whole number", "bad_length")
        if declared is not None and declared > self.max_body:
            return await _refuse(send, 413, self._too_large(f"{declared:,} bytes"), "body_too_large")
        body, more = [], True
        size = 0
        while more:  # read within the bound; a chunked body has no declared length
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            size += len(message.get("body", b""))
            if size > self.max_body:
                return await _refuse(send, 413, self._too_large("more"), "body_too_large")
            body.append(message.get("body", b""))
            more = message.get("more_body", False)
        replay = [{"type": "http.request", "body": b"".join(body), "more_body": False}]

        async def receive_buffered():
            return replay.pop() if replay else await receive()
        return await self.app(scope, receive_buffered, send)

    def _authorised(self, headers: dict) -> bool:
        given = (headers.get(b"authorization") or [b""])[0]
        expected = b"Bearer " + self.api_key.encode()
        return hmac.compare_digest(given, expected)

    def _too_large(self, size: str) -> str:
        return (f"the request body is {size}, more than the {self.max_body:,} bytes this server reads; the model's "
                f"context is far smaller: shorten the messages")


async def _refuse(send, status: int, message: str, code: str, type_: str = "invalid_request_error") -> None:
    """An OpenAI-shaped error, then the connection is closed: the body was not read (or cannot be trusted to
    frame the next request), so nothing after it on this connection is read as a request."""
    body = json.dumps(error_body(message, type_, None, code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
