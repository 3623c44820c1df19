"""From training paragraphs to writer requests, and from replies to candidate examples (before the filters
that need a model: similarity, leakage, near duplicates). See prompts.py for the protocol."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from jobs.synthesize import prompts
from jobs.synthesize.filters import check_text, parse_choice
from jobs.core.engine.writers import OVERSIZED, TOO_LONG, Request, parse_qa


@dataclass
class Candidate:
    kind: str  # fact-qa | fact-cloze | paraphrase
    p: dict  # the paragraph row (paragraphs.parquet)
    question: str
    answer: str
    fact: int | None = None  # index of the fact's sentence in prompts.units(p["text"])
    audience: str | None = None


def paragraph_sha256(p: dict) -> str:
    """The paragraph with the context the writer sees: a change to either changes every key of its requests."""
    what = [p["section"], p["text"], [c["text"] for c in p["before"]], [c["text"] for c in p["after"]]]
    return hashlib.sha256(json.dumps(what, ensure_ascii=False).encode()).hexdigest()


def _request(spec, messages, p, options=(), slot: int = 0, shape: str = "text") -> Request:
    y = spec.synthesize
    if options:  # a choice: greedy and short; the engine scores the options instead of sampling
        return Request(messages, tuple(options), 0.0, 1.0, 8, y.seed, paragraph_sha256(p))
    return Request(messages, (), y.temperature, y.top_p, y.max_new_tokens, y.seed + slot, paragraph_sha256(p), shape)


def first_requests(spec, paragraphs: list[dict]) -> tuple[list[Request], list[tuple]]:
    """Phase 1: is each sentence a fact? and M paraphrases per paragraph. Returns (requests, what each is)."""
    reqs, what = [], []
    for p in paragraphs:
        for j, unit in enumerate(prompts.units(p["text"])):
            reqs.append(_request(spec, prompts.fact_prompt(p, unit), p, prompts.FACT_OPTIONS))
            what.append(("fact", p, j))
        for m in range(spec.synthesize.paraphrases):
            reqs.append(_request(spec, prompts.paraphrase_prompt(p, m), p, slot=m))
            what.append(("paraphrase", p, m))
    return reqs, what


def second_requests(spec, facts: list[tuple[dict, int]]) -> tuple[list[Request], list[tuple]]:
    """Phase 2, per fact: which phrase to blank (when there is a choice) and K questions with answers."""
    y = spec.synthesize
    reqs, what = [], []
    for p, j in facts:
        unit = prompts.units(p["text"])[j]
        options = prompts.blanks(unit, spec.curate.keywords)
        if len(options) > 1:
            numbers = [str(i) for i in range(1, len(options) + 1)]
            reqs.append(_request(spec, prompts.cloze_prompt(p, unit, options), p, numbers))
            what.append(("cloze", p, j, options))
        for k in range(y.questions_per_fact):
            audience = y.audiences[k % len(y.audiences)]
            reqs.append(_request(spec, prompts.qa_prompt(p, unit, audience, k), p, slot=k, shape="qa"))
            what.append(("qa", p, j, audience))
    return reqs, what


def read_facts(what: list[tuple], replies: list[str], rejected) -> list[tuple[dict, int]]:
    """The sentences the writer marked as facts; a reply that is neither option is malformed."""
    facts = []
    for w, reply in zip(what, replies):
        if w[0] != "fact":
            continue
        choice = parse_choice(reply, prompts.FACT_OPTIONS)
        if choice is None:
            rejected("malformed", "fact", w[1], "not Yes or No", reply)
        elif choice == "Yes":
            facts.append((w[1], w[2]))
    return facts


def _candidate(spec, w: tuple, reply: str, rejected) -> Candidate | None:
    """One reply of phase 2 or a paraphrase as a candidate, or None (reported to `rejected`)."""
    kind, p = w[0], w[1]
    if kind == "cloze":
        phrase = parse_choice(reply, tuple(str(i) for i in range(1, len(w[3]) + 1)))
        if phrase is None:
            rejected("malformed", "fact-cloze", p, "not one of the option numbers", reply)
            return None
        return Candidate("fact-cloze", p, *prompts.cloze_messages(p, prompts.units(p["text"])[w[2]],
                                                                  w[3][int(phrase) - 1]), w[2])
    if kind == "qa":
        qa = parse_qa(reply)
        if qa is None:
            rejected("malformed", "fact-qa", p, "not JSON with a question and an answer", reply)
            return None
        c = Candidate("fact-qa", p, qa[0], qa[1], w[2], w[3])
    else:
        c = Candidate("paraphrase", p, prompts.paraphrase_question(p, w[2]), reply.strip())
        if not c.answer or reply in (TOO_LONG, OVERSIZED):
            why = "an empty reply" if not c.answer else "prompt too long" if reply == TOO_LONG else "reply too large"
            rejected("malformed", "paraphrase", p, why, reply)
            return None
    failed = check_text(c.kind, c.question, c.answer, p, spec)
    if failed:
        rejected(failed[0], c.kind, p, failed[1], reply)
        return None
    return c


def candidates(spec, what: list[tuple], replies: list[str], facts: list[tuple[dict, int]], rejected) -> list[Candidate]:
    """Cloze, Q&A and paraphrase candidates that pass the text filters (format, length, language, grounding)."""
    out = []
    for p, j in facts:  # a fact with one phrase to ask for needs no choice
        unit = prompts.units(p["text"])[j]
        options = prompts.blanks(unit, spec.curate.keywords)
        if len(options) == 1:
            out.append(Candidate("fact-cloze", p, *prompts.cloze_messages(p, unit, options[0]), j))
    for w, reply in zip(what, replies):
        c = None if w[0] == "fact" else _candidate(spec, w, reply, rejected)
        if c is not None:
            out.append(c)
    return out
