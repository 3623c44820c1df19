"""Continuous batching: requests join a running decode between steps and leave as soon as they end or are dropped.

    batch = open_batch(engine, rows=32, tokens=1024)       # up to 32 requests of at most 1,024 tokens (prompt + answer)
    batch.add("r1", conversation, "v2", Sampling(temperature=0.7, seed=1))
    while batch.busy():
        for key, chunk in batch.step(): ...         # text chunks; a request's last chunk carries its Generation

Each request keeps its own adapter, sampling settings and seeded generator, so its answer does not depend on what
it was batched with (up to the floating-point rounding of a different batch shape: exact on the CPU, bit-for-bit
not promised on a GPU, where the matmul kernels change with the batch size). The chunks of a request are the ones
Engine.stream yields for it: they concatenate to the Generation's text before the strip. The decoder underneath
is the path's own: jobs/core/engine/fastbatch.py (the fast path: one batched step, per-row slots, adapters merged or
per row) or exactgen.ExactDecoder (the reference: one forward per row). Not thread-safe, like the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.core.engine.generation import Chunk, EngineError, Sampling, _names, cut, finish, held_back, stop_at


@dataclass
class _Answer:
    key: object
    sampling: Sampling
    ids: list[int] = field(default_factory=list)
    sent: str = ""
    text: str = ""  # the text of ids[:read], decoded a few tokens at a time
    prefix: int = 0  # ids[prefix:read] are decoded again as context for the next tokens' text
    read: int = 0
    context: str = ""  # the text of ids[prefix:read] alone

    def decode(self, tokenizer) -> str:
        """The whole text so far, decoding only the tokens since the last read (with a few before them as
        context: vLLM's incremental detokenization), so a step costs the same at token 10 as at token 1,000. A
        token that ends inside a UTF-8 character waits for the next."""
        new = tokenizer.decode(self.ids[self.prefix:], skip_special_tokens=True)
        if len(new) > len(self.context) and not new.endswith("\ufffd") and new.startswith(self.context):
            self.text += new[len(self.context):]
            self.prefix, self.read = self.read, len(self.ids)
            self.context = tokenizer.decode(self.ids[self.prefix:self.read], skip_special_tokens=True)
        return self.text


class Batch:
    def __init__(self, engine, decoder, tokens: int):
        self.engine, self.decoder, self.tokens = engine, decoder, tokens
        self._answers: dict[int, _Answer] = {}  # decoder row id -> the answer so far
        self._rows: dict[object, int] = {}  # caller's key -> decoder row id

    @property
    def mode(self) -> str:
        """How adapters are applied right now: "merged" (one adapter in the batch) or "per-row LoRA"."""
        return self.decoder.mode

    def free(self) -> int:
        """Requests that can still join."""
        return self.decoder.free()

    def busy(self) -> bool:
        """Rows decoding or tokens not yet handed out: call step()."""
        return self.decoder.busy()

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, key, conversation: list[dict], adapter: str | None, sampling: Sampling) -> bool:
        """Queue a request to join at the next step. False when it needs more than this batch's `tokens` (start a
        larger batch once this one drains); EngineError for a request no batch can answer (names it)."""
        [prompt] = self.engine.prompt_ids([conversation])
        self.engine._check([prompt], adapter, sampling, _names([conversation]))
        if len(prompt) + sampling.max_new_tokens > self.tokens:
            return False
        if key in self._rows or not self.free():
            raise EngineError(f"request {key!r} is already in the batch, or the batch is full ({self.free()} free)")
        rid = self.decoder.add(prompt, adapter, sampling)
        self._rows[key], self._answers[rid] = rid, _Answer(key, sampling)
        return True

    def drop(self, key) -> None:
        """The request leaves now (its client has gone): its row is free for the next one."""
        rid = self._rows.pop(key, None)
        if rid is not None:
            self._answers.pop(rid)
            self.decoder.drop(rid)

    def step(self) -> list[tuple[object, Chunk]]:
        """One decode step: (key, Chunk) for each request whose text grew; an ended request's chunk carries its
        Generation, and the request has left the batch."""
        tokenizer, stop_ids = self.engine.tokenizer, self.engine._stop_ids
        out = []
        for rid, token in self.decoder.step():
            answer = self._answers.get(rid)
            if answer is None:
                continue  # a request dropped while its token was on the way
            stops = answer.sampling.stop
            answer.ids.append(token)
            text = None if token in stop_ids else answer.decode(tokenizer)
            if text is None or stop_at(text, stops) is not None or len(answer.ids) >= answer.sampling.max_new_tokens:
                _, text, _ = cut(tokenizer, answer.ids, stop_ids, stops)
                rest = text[len(answer.sent):] if text.startswith(answer.sent) else text
                out.append((answer.key, Chunk(rest, finish(tokenizer, answer.ids, stop_ids, stops))))
                self.drop(answer.key)
                continue
            safe = text[:len(text) - held_back(text, stops)]
            if len(safe) > len(answer.sent) and safe.startswith(answer.sent):
                out.append((answer.key, Chunk(safe[len(answer.sent):], None)))
                answer.sent = safe
        return out


def open_batch(engine, rows: int, tokens: int) -> "Batch":
    """A continuous batch of up to `rows` requests of at most `tokens` tokens each (prompt + answer, capped at the
    context); fewer rows on a GPU whose memory budget cannot hold their KV cache."""
    decoder = engine.decoder(rows, min(tokens, engine.context))
    return Batch(engine, decoder, min(decoder.length, engine.context))
