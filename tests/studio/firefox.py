"""Stock Firefox driven through WebDriver BiDi, the W3C protocol Firefox itself serves (`--remote-debugging-port`):
Playwright drives only its own patched Firefox build, and no driver (geckodriver) can be downloaded here, so this
speaks the protocol over a WebSocket written with the standard library. Enough for the studio's tests: open a page,
run a script in it, wait for a condition, and collect the console's errors and uncaught exceptions."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

from tests.conftest import wait_for


class _WebSocket:
    """A client WebSocket (RFC 6455): text frames, masked as a client's must be."""

    def __init__(self, host: str, port: int, path: str):
        self.sock = socket.create_connection((host, port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.buf = b""
        head = self._read_until(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"WebDriver BiDi refused the WebSocket: {head[:200]!r}")

    def _read_until(self, end: bytes) -> bytes:
        while end not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(end, 1)
        return head

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("Firefox closed the WebDriver BiDi connection")
        self.buf += chunk

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        size = (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536
                else bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(bytes([0x81]) + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self) -> str:
        parts = []
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            if first & 0x0F in (0x1, 0x0):  # text, or its continuation; control frames are skipped
                parts.append(payload)
                if first & 0x80:
                    return b"".join(parts).decode()


class Firefox:
    """One headless Firefox with a fresh profile and one tab."""

    def __init__(self, binary: str, port: int):
        self.profile = tempfile.mkdtemp(prefix="qslm-firefox-")
        self.proc = subprocess.Popen([binary, "--headless", "--no-remote", "--profile", self.profile,
                                      "--remote-debugging-port", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while True:
            try:
                self.ws = _WebSocket("127.0.0.1", port, "/session")
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise
                time.sleep(0.3)
        self._id, self.errors = 0, []
        self.version = self.command("session.new", {"capabilities": {}})["capabilities"]["browserVersion"]
        self.command("session.subscribe", {"events": ["log.entryAdded"]})
        self.tab = self.command("browsingContext.getTree", {})["contexts"][0]["context"]

    def command(self, method: str, params: dict) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if message.get("type") == "error":
                    raise RuntimeError(f"{method}: {message.get('error')}: {message.get('message')}")
                return message["result"]
            self._event(message)

    def _event(self, message: dict) -> None:
        """Console errors and uncaught exceptions (log.entryAdded of level error) are kept in `errors`."""
        if message.get("method") == "log.entryAdded" and message["params"].get("level") == "error":
            self.errors.append(message["params"].get("text"))

    def goto(self, url: str) -> None:
        self.command("browsingContext.navigate", {"context": self.tab, "url": url, "wait": "complete"})

    def js(self, expression: str):
        """The value of a script in the tab (a Promise is awaited); its exception raised as RuntimeError."""
        result = self.command("script.evaluate", {"expression": expression, "target": {"context": self.tab},
                                                  "awaitPromise": True, "resultOwnership": "none"})
        if result.get("type") == "exception":
            raise RuntimeError(result["exceptionDetails"]["text"])
        return _value(result["result"])

    def wait_for(self, expression: str, timeout_s: float) -> bool:
        return wait_for(lambda: self.js(f"Boolean({expression})"), timeout_s, 0.2)

    def close(self) -> None:
        try:
            self.command("session.end", {})
        except Exception:  # noqa: BLE001 - closing a browser that may be gone already
            pass
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def _value(remote: dict):
    """A BiDi RemoteValue as Python: primitives and arrays of them."""
    kind = remote.get("type")
    if kind == "array":
        return [_value(v) for v in remote.get("value", [])]
    if kind in ("undefined", "null"):
        return None
    return remote.get("value")
