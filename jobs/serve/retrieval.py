"""Answering with retrieval in ask and serve: the build's index, the passages of a question in the shared prompt
layout (jobs/core/retrieval/rag.py) within the model's context, and the sources listed beside the answer.

A build published with an index (spec `retrieval:`) answers with retrieval by default when its spec says
`retrieval.default: on`; ask's `/retrieval on|off` and serve's `--retrieval on|off` and per-request body field
`"retrieval": true|false` switch it. A build without an index answers from its weights alone and says so when
retrieval is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from jobs.core.retrieval.rag import fit_passages, sources_listing, user_turn
from jobs.core.store.registry import read_manifest
from jobs.core.retrieval.hybrid import Index, Passage
from jobs.serve import ServeError
from jobs.serve.builds import Build, open_build

PROMPT_OVERHEAD_TOKENS = 48  # chat template markers, the instruction line and the "Passages:" header


def with_index(store, tag: str, artifacts: tuple[str, ...]) -> tuple[str, ...]:
    """The artifacts to fetch for a build, its retrieval index added when it has one."""
    return artifacts + (("index",) if "index" in read_manifest(store, tag).get("artifacts", {}) else ())


def open_served(store, tags: list[str]) -> tuple[dict[str, Build], dict[str, "Retriever"]]:
    """The builds a server answers for, in order, each fetched with its index where it has one, and the retrievers
    of those with an index: what `make serve` and the studio's chat load (IntegrityError for a damaged build)."""
    builds = {tag: open_build(store, tag, with_index(store, tag, ("adapter",))) for tag in tags}
    return builds, {tag: r for tag, b in builds.items() if (r := Retriever.of(b)) is not None}


@dataclass
class Retriever:
    index: Index
    k: int
    default: bool  # the build's spec: retrieval.default == "on"

    @classmethod
    def of(cls, build: Build, embedders: dict | None = None) -> "Retriever | None":
        folder = build.artifact("index")
        if not (folder / "index.json").is_file():
            return None
        settings = build.spec.retrieval
        return cls(Index.load(folder, embedders), settings.k if settings else 4,
                   settings is None or settings.default == "on")

    def passages(self, question: str, budget_tokens: int, count: Callable[[str], int]) -> list[Passage]:
        return fit_passages([h.passage for h in self.index.search(question, self.k)], budget_tokens, count)


def augment(turns: list[dict], retriever: Retriever, context: int, max_new_tokens: int,
            count: Callable[[str], int]) -> tuple[list[dict], list[dict]]:
    """The turns with the last user message in the retrieval layout, and the sources listing. Earlier turns stay
    as they were (their passages are not repeated: the context is 2,048 tokens on the smoke model)."""
    last = max((i for i, t in enumerate(turns) if t["role"] == "user"), default=None)
    if last is None:
        return turns, []
    question = turns[last]["content"]
    used = sum(count(t["content"]) for t in turns)
    passages = retriever.passages(question, context - max_new_tokens - used - PROMPT_OVERHEAD_TOKENS, count)
    out = list(turns)
    out[last] = {"role": "user", "content": user_turn(question, passages)}
    return out, sources_listing(passages)


def request_switch(extra: dict | None, server_default: bool | None, retriever: Retriever | None) -> bool:
    """Whether one request answers with retrieval: its body's `retrieval` field, else the server's --retrieval,
    else the build's spec. Asking for it from a build without an index is a client error."""
    wanted = (extra or {}).get("retrieval")
    if wanted is not None and not isinstance(wanted, bool):
        raise ServeError("retrieval: must be true or false")
    if wanted and retriever is None:
        raise ServeError("retrieval: this build has no retrieval index (its spec has no `retrieval:` section)")
    if retriever is None:
        return False
    return wanted if wanted is not None else (server_default if server_default is not None else retriever.default)
