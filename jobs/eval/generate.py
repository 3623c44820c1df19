"""What eval asks of the generation engine (jobs/core/engine/generation.py): the suite's questions as chats with the
dataset's system prompt, answered greedily in one batched call, timed."""

from __future__ import annotations

import time
from typing import Sequence

from jobs.core.engine.generation import Engine, Generation, Sampling


def conversations(questions: Sequence[str], system_prompt: str | None) -> list[list[dict]]:
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [system + [{"role": "user", "content": q}] for q in questions]


def answer(engine: Engine, questions: Sequence[str], *, system_prompt: str | None, adapter: str | None,
           max_new_tokens: int) -> tuple[list[Generation], dict]:
    """Greedy answers in the order of `questions`, and timing {seconds, new_tokens, tokens_per_s, compile_s}
    (compile_s: graph compilation and capture inside `seconds`, paid once per shape on the fast path)."""
    compiled, start = engine.compile_seconds, time.perf_counter()
    answers = engine.chat(conversations(questions, system_prompt), adapter, Sampling(max_new_tokens=max_new_tokens))
    seconds = time.perf_counter() - start
    total = sum(g.new_tokens for g in answers)
    return answers, {"seconds": seconds, "new_tokens": total, "tokens_per_s": total / max(seconds, 1e-9),
                     "compile_s": engine.compile_seconds - compiled}
