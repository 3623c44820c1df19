"""The real HTTP server (api.make_app behind the guard, api.run_http's uvicorn settings) over a stand-in engine
that answers at once, so the fault tier can abuse the server on its socket without a model.

    python -m tests.faults.fake_server PORT          # QSLM_API_KEY, if set, is required as in `make serve`
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from jobs.core.spec.load import spec_by_tag
from jobs.serve.api import make_app, run_http
from jobs.serve.builds import Build
from jobs.serve.worker import Worker

CONTEXT_TOKENS = 2048


class CharTokenizer:
    """One token per character of the conversation's text: enough for the server's context check."""

    def apply_chat_template(self, turns, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{t['role']}>{t['content']}" for t in turns) + "<assistant>"

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


class AnsweringEngine:
    def chat(self, conversations, adapter, sampling):
        return [SimpleNamespace(text="an answer", finish_reason="stop", new_tokens=3) for _ in conversations]

    def stream(self, conversation, adapter, sampling):
        yield SimpleNamespace(text="an ", generation=None)
        yield SimpleNamespace(text="answer", generation=SimpleNamespace(text="an answer", finish_reason="stop",
                                                                        new_tokens=2))


def main(port: int) -> None:
    spec = spec_by_tag("smoke")
    manifest = {"created_at": datetime.now(timezone.utc).isoformat(), "status": "passed"}
    builds = {"smoke": Build(tag="smoke", manifest=manifest, spec=spec, folder=Path("/nonexistent"))}
    worker = Worker(AnsweringEngine(), 8, 4)
    worker.start()
    app = make_app(builds, worker, CharTokenizer(), CONTEXT_TOKENS, os.environ.get("QSLM_API_KEY") or None)
    run_http(app, "127.0.0.1", port)


if __name__ == "__main__":
    main(int(sys.argv[1]))
