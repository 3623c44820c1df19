"""Answering from retrieved passages: the one prompt layout that RAFT training examples, eval, ask and serve use,
citations read back from an answer, and the names of eval's four arms.

The user turn holds the numbered passages, each with its locator, then the question:

    Passages:
    [1] thesis/main.tex > Quantum kernels > Fidelity (p. 12)
    <text>

    [2] ...

    Question: <question>
    Answer from the passages and cite them by number, e.g. [1]. If they do not answer it, say: The passages do
    not say: the documents do not cover this.

When the passages do not hold the answer the model is to say NOT_COVERED. That decision is the model's, not a
similarity threshold's (an on-topic question the documents do not answer scores as high as an answerable one):
the prompt asks for it, RAFT examples without their oracle passage teach it (synthesis), and eval measures it on
the suite's `expect: abstain` items per arm (abstention_rate) beside false abstentions on answerable ones.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from jobs.core.retrieval.hybrid import Hit, Passage

NOT_COVERED = "The passages do not say: the documents do not cover this."  # diagnose.abstains() reads it
INSTRUCTION = ("Answer from the passages and cite them by number, e.g. [1]. If they do not answer it, say: "
               + NOT_COVERED)
CITATION = re.compile(r"\[(\d{1,2})\]")


def arm_uses_adapter(arm: str) -> bool:
    return arm.startswith("adapter")


def fit_passages(passages: Sequence[Passage], budget_tokens: int, count_tokens: Callable[[str], int]) -> list:
    """The leading passages whose blocks fit `budget_tokens` (the model's context less the question, the system
    prompt and the answer's max_new_tokens); at least none, never a passage cut in the middle."""
    out, used = [], 0
    for p in passages:
        cost = count_tokens(_block(len(out) + 1, p))
        if used + cost > budget_tokens:
            break
        out.append(p)
        used += cost
    return out


def _block(n: int, p: Passage) -> str:
    return f"[{n}] {p.locator()}\n{p.text}"


def user_turn(question: str, passages: Sequence[Passage]) -> str:
    """The user message: numbered passages, the question, the instruction. No passages: the question alone."""
    if not passages:
        return question
    blocks = "\n\n".join(_block(n, p) for n, p in enumerate(passages, start=1))
    return f"Passages:\n{blocks}\n\nQuestion: {question}\n{INSTRUCTION}"


def cited(answer: str, passages: Sequence[Passage]) -> list[Passage]:
    """The passages an answer cites by number ([n] with 1 <= n <= len(passages)), in order, each once."""
    seen, out = set(), []
    for m in CITATION.finditer(answer):
        n = int(m.group(1))
        if 1 <= n <= len(passages) and n not in seen:
            seen.add(n)
            out.append(passages[n - 1])
    return out


def sources_listing(hits: Sequence[Hit] | Sequence[Passage]) -> list[dict]:
    """What ask prints and serve returns beside the message: number, paragraph ids, file, section, page."""
    out = []
    for n, h in enumerate(hits, start=1):
        p = h.passage if isinstance(h, Hit) else h
        out.append({"n": n, "id": p.id, "paragraph_ids": list(p.ids), "file": p.file, "section": p.section,
                    "page": p.page})
    return out


def format_sources(listing: Sequence[dict]) -> str:
    if not listing:
        return "Sources: none (retrieval off or nothing found)"
    return "Sources:\n" + "\n".join(
        f"  [{s['n']}] {s['file']}" + (f" > {s['section']}" if s["section"] else "")
        + (f", p. {s['page']}" if s["page"] else "") + f"  ({s['id']})" for s in listing)
