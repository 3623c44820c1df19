"""The writers: the build's own base model through the generation engine, or an OpenAI-compatible endpoint
through the official `openai` client. Both answer the same requests: free text, or a choice among options.
Synthesis writes training data with them; `make new` phrases draft eval questions with them. Configured by the
spec's `synthesize.writer`.

An endpoint request that fails for a passing reason (connection refused or reset, timeout, 408/409/429, 5xx, a
truncated body) is retried with exponential backoff (synthesize.writer.backoff_s, doubling, `retries` times); then
the stage stops with an error naming the endpoint, the model and the last failure. An answer that is JSON but not
a chat completion stops it at once, naming the endpoint and what was wrong. A reply body is read only up to
MAX_REPLY_BYTES: beyond that the reply is OVERSIZED, which the filters count as malformed and the cache never
keeps. Replies already received are in the cache, so a rerun resumes there.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable

from jobs.core.errors import QslmError
from jobs.core.spec.schema import BuildSpec

RETRY_STATUS = (408, 409, 429)  # and every 5xx: the server may answer next time
TOO_LONG = "[prompt too long for the writer's context]"  # the engine writer's reply to a prompt it cannot take
OVERSIZED = "[reply larger than the writer's bound: dropped]"  # what stands for a reply too large to keep
MAX_REPLY_BYTES = 1 << 20  # one chat completion's JSON; a reply of max_new_tokens (<= 32,768) tokens is far less
FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.S)


def parse_qa(reply: str) -> tuple[str, str] | None:
    """(question, answer) from a JSON reply (a ```json fence around it is accepted), or None."""
    text = FENCE.sub("", reply.strip())
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        data = json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    q, a = data.get("question"), data.get("answer")
    if not (isinstance(q, str) and isinstance(a, str) and q.strip() and a.strip()):
        return None
    return q.strip(), a.strip()


class WriterError(QslmError):
    """A writer that cannot answer: the message names the endpoint, the model or the value, and the fix."""


class _NotJSON(Exception):
    """A 200 answer whose body is not JSON (cut short, or a proxy's page): worth trying again."""


class _NotACompletion(Exception):
    """A JSON answer that is not a chat completion: the endpoint is not what the spec says; no retry helps."""


def completion_text(body: bytes) -> str:
    """The assistant's text of a chat-completion body; _NotJSON or _NotACompletion saying what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _NotJSON(f"{len(body):,} bytes that are not JSON ({str(exc)[:80]})") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _NotACompletion(f"no choices list in {str(body[:120])[2:-1]!r}")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(message, dict) or not isinstance(content, (str, type(None))):
        raise _NotACompletion(f"choices[0].message.content is not text in {str(body[:120])[2:-1]!r}")
    return content or ""


@dataclass
class Request:
    messages: list[dict]
    options: tuple[str, ...]  # () = free text; else the reply is one of these
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int
    paragraph_sha256: str  # the paragraph (with its context) the request is about
    shape: str = "text"  # what the reply must be: "text", or "qa" (JSON with a question and an answer); not a
    # determinant of the reply (the messages ask for it), so not part of the cache key

    def sampling(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": self.max_new_tokens,
                "seed": self.seed}


Done = Callable[[int, str], None]  # (request index, reply): called as each reply arrives, to cache it at once


class EngineWriter:
    """The base model, exactly as the build trains it (4-bit or not), without an adapter; loaded on first use,
    so a run that finds every reply cached never loads it."""

    reproducible = True  # the same request gives the same reply (greedy, or seeded): a malformed one is reused

    def __init__(self, spec: BuildSpec, model_dir):
        b, t = spec.base_model, spec.train
        self.spec, self.engine = spec, None
        self.name = f"engine:{b.id}@{b.revision or model_dir.name}:{t.quantization}-{t.compute_dtype}"
        self.note = ""

    def _load(self):
        if self.engine is None:
            from jobs.core.engine.generation import Engine, EngineSettings

            # the writer's own batch and the build's GPU memory budget (the engine reads no spec section itself)
            settings = EngineSettings(batch_size=self.spec.synthesize.writer.batch_size,
                                      memory_budget_gib=self.spec.train.memory_budget_gib)
            self.engine = Engine.load(self.spec, None, settings)
            self.note = f"engine path {self.engine.path}: {self.engine.path_note}"
        return self.engine

    def run(self, requests: list[Request], done: Done) -> None:
        from jobs.core.engine.generation import NLL_MAX_TOKENS, Sampling

        engine, size = self._load(), self.spec.synthesize.writer.batch_size
        lengths = [len(ids) for ids in engine.prompt_ids([r.messages for r in requests])]
        # A prompt the model cannot take (or, for a choice, that the engine would score truncated, before the
        # options) gets TOO_LONG as its reply, which the filters count as malformed, instead of stopping the run.
        limit = [NLL_MAX_TOKENS - 16 if r.options else engine.context - r.max_new_tokens for r in requests]
        for i in (i for i in range(len(requests)) if lengths[i] > limit[i]):
            done(i, TOO_LONG)
        todo = [i for i in range(len(requests)) if lengths[i] <= limit[i]]
        groups: dict[tuple, list[int]] = {}
        for i in (i for i in todo if not requests[i].options):  # one Sampling per batched call
            groups.setdefault(tuple(requests[i].sampling().values()), []).append(i)
        for idx in groups.values():
            s = requests[idx[0]]
            sampling = Sampling(max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p,
                                seed=s.seed)
            for start in range(0, len(idx), size):
                batch = idx[start:start + size]
                for i, g in zip(batch, engine.chat([requests[i].messages for i in batch], None, sampling)):
                    done(i, g.text)
        choices = [i for i in todo if requests[i].options]
        for start in range(0, len(choices), size):
            batch = choices[start:start + size]
            for i, option in zip(batch, self._choose(engine, [requests[i] for i in batch])):
                done(i, option)

    @staticmethod
    def _choose(engine, batch: list[Request]) -> list[str]:
        """Per request, the option the model finds likeliest after the prompt: constrained by construction, so
        even a random model answers within the protocol. The prompt is the same for every option of a request,
        so comparing whole texts' NLL compares the options'."""
        texts, spans = [], []
        for r in batch:
            prompt = engine.tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
            spans.append((len(texts), len(r.options)))
            texts += [prompt + o for o in r.options]
        scores = engine.nll(texts, None)  # one batched call for the whole batch's options
        return [r.options[min(range(n), key=lambda k: (scores[first + k][0], k))]
                for r, (first, n) in zip(batch, spans)]


class OpenAIWriter:
    """Any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp server, a hosted API)."""

    reproducible = False  # an endpoint can be fixed, or answer badly once: a malformed reply is asked again

    def __init__(self, spec: BuildSpec):
        w = spec.synthesize.writer
        self.w = w
        self.base_url = w.base_url or os.environ.get("QSLM_WRITER_BASE_URL")
        self.model = w.model or os.environ.get("QSLM_WRITER_MODEL")
        if not self.base_url or not self.model:
            raise WriterError(f"{spec.source_file}: synthesize.writer.kind is openai but no "
                                 f"{'base_url' if not self.base_url else 'model'} is set: set it in the spec's "
                                 f"synthesize.writer or export "
                                 f"{'QSLM_WRITER_BASE_URL' if not self.base_url else 'QSLM_WRITER_MODEL'}")
        self.name = f"openai:{self.model}@{w.revision or 'unpinned'}"
        self.note = f"endpoint {self.base_url}"
        from openai import OpenAI

        key = os.environ.get("QSLM_WRITER_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        self.client = OpenAI(base_url=self.base_url, api_key=key, timeout=w.timeout_s, max_retries=0)

    def _once(self, r: Request) -> str:
        with self.client.chat.completions.with_streaming_response.create(
                model=self.model, messages=r.messages, temperature=r.temperature, top_p=r.top_p,
                max_tokens=r.max_new_tokens, seed=r.seed) as response:
            body = bytearray()
            for chunk in response.iter_bytes():  # read within the bound: never the whole of a runaway reply
                body += chunk
                if len(body) > MAX_REPLY_BYTES:
                    return OVERSIZED
        return completion_text(bytes(body))

    def ask(self, r: Request, stop: threading.Event) -> str | None:
        """The reply, after retries; None when another request already failed for good (`stop` is set)."""
        import httpx2  # the openai client's HTTP library: its errors surface while a body streams in
        import openai

        started, last = time.monotonic(), None
        for attempt in range(self.w.retries + 1):
            if stop.is_set():
                return None
            try:
                return self._once(r)
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRY_STATUS and exc.status_code < 500:
                    stop.set()  # before raising: the worker's next request must see it
                    raise WriterError(f"writer endpoint {self.base_url} refused the request for model "
                                         f"{self.model}: HTTP {exc.status_code} {exc.message}; check "
                                         f"synthesize.writer.model and the endpoint's key") from None
                last = f"HTTP {exc.status_code} {exc.message}"
            except openai.APITimeoutError:
                last = f"no reply within {self.w.timeout_s} s (synthesize.writer.timeout_s)"
            except openai.APIConnectionError as exc:
                last = f"{exc.message} ({exc.__cause__ or 'no detail'})"
            except httpx2.HTTPError as exc:  # while the body streams in: cut short, or too slow
                last = f"the reply broke off ({type(exc).__name__}: {str(exc)[:120]})"
            except _NotJSON as exc:
                last = f"a reply of {exc}"
            except _NotACompletion as exc:
                stop.set()
                raise WriterError(f"writer endpoint {self.base_url} (model {self.model}) answered with JSON that "
                                     f"is not a chat completion: {exc}. Check synthesize.writer.base_url: it must "
                                     f"be the root of an OpenAI-compatible API (ending in /v1)") from None
            if attempt < self.w.retries:
                time.sleep(self.w.backoff_s * 2 ** attempt)
        stop.set()
        raise WriterError(f"writer endpoint {self.base_url} (model {self.model}) failed {self.w.retries + 1} "
                             f"times over {time.monotonic() - started:.0f} s; last: {last}. Is the server up and "
                             f"serving that model? Replies received so far are cached: rerun to resume")

    def run(self, requests: list[Request], done: Done) -> None:
        error, stop = None, threading.Event()
        with ThreadPoolExecutor(self.w.concurrency) as pool:
            futures = {pool.submit(self.ask, r, stop): i for i, r in enumerate(requests)}
            for future in as_completed(futures):
                try:
                    reply = future.result()
                except WriterError as exc:  # ask() has set `stop`; replies already in flight are still cached
                    error = error or exc
                    continue
                if reply is not None:
                    done(futures[future], reply)
        if error:
            raise error


def make_writer(spec: BuildSpec, model_dir) -> EngineWriter | OpenAIWriter:
    return OpenAIWriter(spec) if spec.synthesize.writer.kind == "openai" else EngineWriter(spec, model_dir)
