"""The real HTTP server (api.make_app behind the guard, api.run_http's uvicorn settings) over a stand-in engine
that answers at once, so the fault tier can abuse the server on its socket without a model.

    python -m tests.faults.fake_server PORT          # QSLM_API_KEY, if set, is required as in `make serve`
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from jobs.core.spec.load import spec_by_tag
from jobs.serve.api import make_app, run_http
from jobs.serve.builds import Build
from jobs.serve.worker import Worker

CONTEXT_TOKENS = 2048
ANSWER = ("an", " answer")  # the stand-in model's words, one token each


class CharTokenizer:
    """One token per character of the conversation's text: enough for the server's context check."""

    def apply_chat_template(self, turns, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{t['role']}>{t['content']}" for t in turns) + "<assistant>"

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


class AnsweringDecoder:
    """Every request answers "an answer" at once, one word a step, then the stop token (0): the decoder
    interface the worker's continuous batch drives (jobs/core/engine/batch.py), without a model."""

    mode = "merged"

    def __init__(self, rows: int, tokens: int):
        self.rows, self.length, self._live, self._next = rows, tokens, {}, 0

    def add(self, prompt, adapter, sampling) -> int:
        self._next += 1
        self._live[self._next] = [*range(1, len(ANSWER) + 1), 0]
        return self._next

    def drop(self, rid) -> None:
        self._live.pop(rid, None)

    def free(self) -> int:
        return self.rows - len(self._live)

    def busy(self) -> bool:
        return bool(self._live)

    def step(self):
        out = [(rid, tokens.pop(0)) for rid, tokens in self._live.items()]
        self._live = {rid: tokens for rid, tokens in self._live.items() if tokens}
        return out


class AnsweringEngine:
    """What the worker asks of an engine, answering at once (a prompt's characters are its tokens; 0 stops)."""

    adapters = ("smoke",)
    context = CONTEXT_TOKENS
    _stop_ids = [0]

    class tokenizer:  # noqa: N801  (the engine's tokenizer attribute)
        @staticmethod
        def decode(ids, skip_special_tokens=True):
            return "".join(ANSWER[i - 1] for i in ids if 0 < i <= len(ANSWER))

    def prompt_ids(self, conversations):
        return [[ord(c) for c in CharTokenizer().apply_chat_template(turns)] for turns in conversations]

    def tokens_needed(self, conversation, sampling) -> int:
        return len(self.prompt_ids([conversation])[0]) + sampling.max_new_tokens

    def _check(self, prompts, adapter, sampling, names) -> None:
        pass  # the server has checked the request's size already

    def decoder(self, rows: int, tokens: int):
        return AnsweringDecoder(rows, tokens)


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
