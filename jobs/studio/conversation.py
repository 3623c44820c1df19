"""Chat in the studio: the serve stage's OpenAI-compatible server (jobs.serve.api.make_app), loaded in this process
for the builds a chat asks for, answering under /v1/ exactly as `make serve` does: each build under its tag, `base`
(the base model without an adapter, asked as the first build is), and each build's retrieval index loaded as serve
loads it, so a request's `retrieval` field answers from cited passages. It is the one generation path; the studio's
page reads its server-sent events. Loading imports torch: only a chat does."""

from __future__ import annotations

import json
import threading

from jobs.studio import StudioError

MAX_QUEUE, MAX_BATCH = 8, 8  # one researcher's page: a handful of requests at a time


class ChatHost:
    """The serve app for a set of builds that share one base, replaced when a chat asks for others."""

    def __init__(self, store, device: str = "auto"):
        self.store, self.device = store, device
        self.app, self.tags, self.worker = None, [], None
        self.lock = threading.Lock()

    def load(self, tags: list[str]) -> dict:
        """Make the server answer for `tags` (loading their adapters over their shared base, and their indexes;
        `base` is asked as tags[0] is); returns a summary."""
        with self.lock:
            if self.app is not None and tags[0] == self.tags[0] and set(tags) <= set(self.tags):
                return {"tags": self.tags, "loaded": False}
            try:
                return self._load(tags)
            except ImportError as exc:  # a light install: the studio extra without serve's (torch)
                raise StudioError(f"chat needs the serve extra ({exc.name} is not installed): "
                                  f"pip install -e '.[serve]' (the rest of the studio runs without it)") from None

    def _load(self, tags: list[str]) -> dict:
        from jobs.core.engine.loading import load_tokenizer
        from jobs.serve.api import make_app
        from jobs.serve.builds import describe, load_engine
        from jobs.serve.retrieval import open_served
        from jobs.serve.worker import Worker

        served, retrievers = open_served(self.store, tags)  # as `make serve` loads them
        builds = list(served.values())
        engine = load_engine(builds, self.device)  # ServeError when their bases differ
        tokenizer = load_tokenizer(engine.base_dir)
        if self.worker is not None:
            self.worker.stop()
        self.worker = Worker(engine, MAX_QUEUE, MAX_BATCH)
        self.worker.start()
        self.app = make_app(served, self.worker, tokenizer, engine.context, retrievers=retrievers)
        self.tags = list(tags)
        return {"tags": self.tags, "loaded": True, "description": describe(builds, engine)}

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()


LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]"}  # the Host a browser on this machine sends


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


class WithChat:
    """The studio's ASGI app, with /v1/... handed to the loaded serve app (503 before a chat loaded one). A request
    whose Host is not this machine's loopback name is refused: a page elsewhere that rebinds its own name to
    127.0.0.1 could otherwise read the studio's pages and their token."""

    def __init__(self, studio, host: ChatHost):
        self.studio, self.host = studio, host

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            name = dict(scope["headers"]).get(b"host", b"").decode("latin-1").rsplit(":", 1)[0]
            if name not in LOCAL_HOSTS:
                await _refuse(send, 421, f"the studio answers only as 127.0.0.1 or localhost, not {name[:80]!r}")
                return
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            if self.host.app is None:
                await _refuse(send, 503, "no chat is loaded: open the studio's chat page and pick the builds to ask")
                return
            await self.host.app(scope, receive, send)
            return
        await self.studio(scope, receive, send)
