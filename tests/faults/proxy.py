"""A small TCP proxy on loopback in front of the S3 endpoint, to stop, freeze and restore it under a client.

    proxy = Proxy(upstream_port)      # listens on 127.0.0.1:<proxy.port>, forwards to 127.0.0.1:upstream_port
    proxy.set("stop")                 # the endpoint is down: connections refused, open ones cut
    proxy.set("freeze")               # it accepts and holds connections but never answers (a hung server)
    proxy.set("drop")                 # requests reach the server, its answers are lost and the connection cut
    proxy.set("pass")                 # restored
"""

from __future__ import annotations

import selectors
import socket
import threading
import time

MODES = ("pass", "stop", "freeze", "drop")
POLL_S = 0.05  # how often a connection looks at the mode


class Proxy:
    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.mode = "pass"
        self.connections = 0  # accepted, for the figures
        self._closed = False
        self._listener = socket.create_server(("127.0.0.1", 0), reuse_port=False)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._start_listening(self._listener)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        assert mode in MODES, mode
        with self._lock:
            was, self.mode = self.mode, mode
            if mode == "stop" and was != "stop":
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread and stops listening now
                self._listener.close()
            elif was == "stop" and mode != "stop":
                listener = socket.socket()
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", self.port))
                listener.listen()
                self._listener = listener
                self._start_listening(listener)

    def close(self) -> None:
        self._closed = True
        self.set("stop")

    def _start_listening(self, listener: socket.socket) -> None:
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: stopped
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, server)
        sel.register(server, selectors.EVENT_READ, client)
        try:
            while not self._closed and self.mode != "stop":
                if self.mode == "freeze":
                    time.sleep(POLL_S)  # hold the connection open and forward nothing
                    continue
                for key, _ in sel.select(POLL_S):
                    data = key.fileobj.recv(1 << 16)
                    if not data:
                        return
                    if key.fileobj is server and self.mode == "drop":
                        return  # the request landed; its answer is lost
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            client.close()
            server.close()
