"""The OpenAI chat-completions wire format: the request the server accepts, the objects it returns, the errors.

Only what this server honours is modelled; unknown request fields are accepted and ignored (clients send
`user`, `logprobs: false` and the like), but options that would change the answer and are not supported
(n > 1, tools, logprobs, a JSON response_format, penalties, ...: UNHONOURED) are refused with a 400 naming the
field rather than silently dropped. Every number is finite and bounded on both sides (NaN and the infinities are
refused), and every list and string has a most, so nothing unbounded reaches the engine; the body as a whole is
bounded before it is read (jobs/serve/guard.py).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

MAX_STOP = 4  # OpenAI's own limit on stop sequences
MAX_STOP_CHARS = 200  # per stop sequence
MAX_MESSAGES = 1024  # per request; the context (32,768 tokens for Qwen2.5) is checked in tokens after this
MAX_PARTS = 256  # content parts per message
MAX_NEW_TOKENS = 32_768  # the longest context of a Qwen2.5 model; the server's own check is the model's context
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes
# The model id of the base model without an adapter, beside the build tags (so no build can be served as "base":
# jobs/serve/builds.py load_engine refuses it). It answers as eval's base arm does: the first build's system
# prompt, default max_tokens and retrieval index.
BASE_MODEL = "base"


class TextPart(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | Annotated[list[TextPart], Field(max_length=MAX_PARTS)]

    def as_turn(self) -> dict:
        # "developer" is the newer name of the system role in OpenAI's API; the chat template knows "system".
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    model: str = Field(max_length=200)
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    # Greedy by default: the decoding eval scored the build with. Ask for temperature > 0 to sample.
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)
    stop: str | list[str] | None = Field(None, validate_default=True)  # a tuple once validated
    stream: bool = False
    stream_options: dict | None = None
    seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    n: int = 1
    tools: list | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, value):
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP or any(not s or len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"give at most {MAX_STOP} non-empty stop sequences of at most {MAX_STOP_CHARS} "
                             f"characters each")
        return tuple(stops)

    @field_validator("n")
    @classmethod
    def _n(cls, value):
        if value != 1:
            raise ValueError("this server gives one answer per request: n must be 1")
        return value

    @field_validator("tools")
    @classmethod
    def _tools(cls, value):
        if value:
            raise ValueError("tool calls are not supported by this server")
        return value

    @model_validator(mode="after")
    def _honourable(self):
        for name, (harmless, why) in UNHONOURED.items():
            value = (self.model_extra or {}).get(name)
            if name in (self.model_extra or {}) and not harmless(value):
                raise PydanticCustomError("unsupported_field", "{why}; leave it out or send {harmless}",
                                          {"field": name, "why": why, "harmless": HARMLESS_WORDS[name]})
        return self

    def turns(self) -> list[dict]:
        return [m.as_turn() for m in self.messages]

    def has_system(self) -> bool:
        return any(m.role in ("system", "developer") for m in self.messages)

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


# Fields this server cannot honour: (is this value harmless, why not). A harmless value (logprobs: false, a
# text response_format, zero penalties, null) is accepted, since clients send the defaults explicitly.
UNHONOURED = {
    "logprobs": (lambda v: v in (None, False), "this server does not return log-probabilities"),
    "top_logprobs": (lambda v: v in (None, 0), "this server does not return log-probabilities"),
    "response_format": (lambda v: v is None or v == {"type": "text"},
                        "this server answers in plain text only (no JSON mode or JSON schema)"),
    "presence_penalty": (lambda v: v in (None, 0), "penalties are not supported"),
    "frequency_penalty": (lambda v: v in (None, 0), "penalties are not supported"),
    "logit_bias": (lambda v: v in (None, {}), "logit_bias is not supported"),
    "functions": (lambda v: v in (None, []), "function calls are not supported"),
    "tool_choice": (lambda v: v in (None, "none"), "tool calls are not supported"),
    "modalities": (lambda v: v in (None, ["text"]), "this server answers in text only"),
    "audio": (lambda v: v is None, "this server answers in text only"),
}
HARMLESS_WORDS = {"logprobs": "false", "top_logprobs": "0", "response_format": '{"type": "text"}',
                  "presence_penalty": "0", "frequency_penalty": "0", "logit_bias": "{}", "functions": "[]",
                  "tool_choice": '"none"', "modalities": '["text"]', "audio": "null"}


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(cid: str, model: str, generation, prompt_tokens: int) -> dict:
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": generation.text},
                         "finish_reason": generation.finish_reason, "logprobs": None}],
            "usage": usage(prompt_tokens, generation.new_tokens)}


def chunk(cid: str, model: str, delta: dict, finish_reason: str | None = None, usage_: dict | None = None,
          created: int | None = None) -> dict:
    choices = [] if usage_ else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
    created = int(time.time()) if created is None else created  # a stream's chunks share the first's, as OpenAI's do
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": choices}
    if usage_:
        body["usage"] = usage_
    return body


def content_frame(cid: str, model: str, created: int) -> tuple[str, str]:
    """(prefix, suffix): prefix + json.dumps(text) + suffix is json.dumps(chunk(cid, model, {"content": text})), byte
    for byte, at `created`. A streamed answer sends one such chunk per row per decode step (~11,000 a second at 32
    streams on an H100): dumping only the text, not the whole dict, keeps the event loop's cost per event low."""
    whole = json.dumps(chunk(cid, model, {"content": ""}, created=created))
    # Inside a JSON string every quote is escaped, so this unescaped sequence is the delta itself, once.
    prefix, found, suffix = whole.rpartition('"content": ""')
    assert found, whole
    return prefix + '"content": ', suffix


def model_card(build) -> dict:
    """A /v1/models entry: the build tag is the model name; status and base say what it is."""
    from datetime import datetime

    created = int(datetime.fromisoformat(build.manifest["created_at"]).timestamp())
    return {"id": build.tag, "object": "model", "created": created, "owned_by": "quantum-slm",
            "status": build.manifest["status"], "base_model": build.spec.base_model.id}


def base_card(build) -> dict:
    """The /v1/models entry of BASE_MODEL: the base the builds share, asked as `build` (the first) is asked."""
    return {**model_card(build), "id": BASE_MODEL, "status": "base", "asked_as": build.tag}
