"""Memorised vs generalised: the build's own training questions asked again, closed-book, as trained and reworded.

A sample of `eval.train_questions` training examples (a seeded hash order, so the same examples every run) is
asked verbatim (the example's own system and user turns) and reworded, to the adapter and to the base. An answer
is right when its MiniLM similarity to the trained answer reaches diagnose.RIGHT_SIMILARITY (training examples
have no expected concepts). An answer cut at the token limit is compared with as many words of the trained
answer as it has, so a long memorised paragraph is not marked wrong for being cut.

Rewording: the base model is asked to rephrase the question (REWORD_PROMPT); the rephrasing is used when it is a
real rewording of the same question (MiniLM similarity to the original at least REWORD_MIN_SIMILARITY, not the
same words, at most REWORD_MAX_LENGTH times as long), else a template rewording is used. Each probe records which.

Reading the result (the report states it): verbatim right far above reworded and held-out means memorised without
transfer; low on verbatim too means the adapter did not take the facts in.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Callable

from jobs.eval import diagnose, scoring

REWORD_PROMPT = ("Rewrite the following question in different words, keeping exactly its meaning. Reply with the "
                 "rewritten question only.\n\nQuestion: {question}")
REWORD_MIN_SIMILARITY = 0.7  # MiniLM cosine between the original and the rewording
REWORD_MAX_LENGTH = 2.0  # characters, relative to the original
REWORD_MAX_TOKENS = 64
MEMORISED_GAP = 0.3  # verbatim right minus reworded (or held-out) right above this: memorised without transfer
NOT_TAKEN_IN = 0.3  # verbatim right below this (and not above the base's): the facts did not go in

# Template rewordings of curate's question forms; anything else is framed as a colleague's question.
TEMPLATES = (
    (re.compile(r"^(?:What is meant by|Define|Give a definition of|What is|What are) (.+?)[.?]$", re.I),
     "Could you explain what {0} means?"),
    (re.compile(r"^(?:How are|What is the connection between) (.+?) (?:and) (.+?)(?: related)?\?$", re.I),
     "What links {0} and {1}?"),
    (re.compile(r"^(?:Explain the role of|What does the material on) (.+?) (?:in|say about) (.+?)[.?]$", re.I),
     "Regarding {1}: what part does {0} play there?"),
)
FALLBACK = 'A colleague asks you: "{0}" What do you tell them?'

FORMS = ("verbatim", "reworded")
# (conversations, adapter?, max_new_tokens) -> generations (.text, .new_tokens, .stopped), in input order
Chat = Callable[[list[list[dict]], bool, int], list]


def sample(examples: list[dict], n: int, seed: int) -> list[dict]:
    """n training examples in a seeded hash order (stable across runs and machines)."""
    def key(e):
        return hashlib.sha256(f"{seed}:{e['id']}".encode()).hexdigest()
    return sorted(examples, key=key)[:n]


def template_reword(question: str) -> str:
    q = " ".join(question.split())
    for pattern, form in TEMPLATES:
        m = pattern.match(q)
        if m:
            return form.format(*(g.strip() for g in m.groups()))
    return FALLBACK.format(q)


def accept_reword(original: str, candidate: str, similarity: float) -> bool:
    """Is `candidate` a rewording of `original`: same meaning, other words, one line, similar length?"""
    c = candidate.strip()
    if not c or "\n" in c or len(c) > REWORD_MAX_LENGTH * len(original) + 20:
        return False
    return scoring.normalise(c) != scoring.normalise(original) and similarity >= REWORD_MIN_SIMILARITY


def _turns(example: dict) -> tuple[list[dict], str, str]:
    """(system turns, user question, trained answer) of a training example."""
    system = [m for m in example["messages"] if m["role"] == "system"]
    user = next(m["content"] for m in example["messages"] if m["role"] == "user")
    answer = next(m["content"] for m in example["messages"] if m["role"] == "assistant")
    return system, user, answer


def reword(questions: list[str], chat: Chat, embed) -> list[tuple[str, str]]:
    """(reworded question, "engine" | "template") per question; the base model proposes, the check decides."""
    if not questions:
        return []
    prompts = [[{"role": "user", "content": REWORD_PROMPT.format(question=q)}] for q in questions]
    proposals = [g.text.strip().strip('"') for g in chat(prompts, False, REWORD_MAX_TOKENS)]
    a, b = embed(questions), embed([p or "-" for p in proposals])
    return [(p, "engine") if accept_reword(q, p, float(x @ y)) else (template_reword(q), "template")
            for q, p, x, y in zip(questions, proposals, a, b)]


def _reference(generation, reference: str, max_new_tokens: int) -> str:
    """The trained answer, or as many of its words as a cut answer has."""
    cut = generation.new_tokens >= max_new_tokens and not generation.stopped
    return " ".join(reference.split()[:len(generation.text.split())]) if cut else reference


def run(examples: list[dict], chat: Chat, embed, max_new_tokens: int) -> list[dict]:
    """Ask each sampled example verbatim and reworded, to the adapter and the base; one scored row each."""
    turns = [_turns(e) for e in examples]
    reworded = reword([u for _, u, _ in turns], chat, embed)
    convs = {"verbatim": [s + [{"role": "user", "content": u}] for s, u, _ in turns],
             "reworded": [s + [{"role": "user", "content": r}] for (s, _, _), (r, _) in zip(turns, reworded)]}
    # The trained answer stays in train.parquet (row `id`); a row keeps what was asked and answered.
    rows = [{"id": e["id"], "template": e["template"], "question": u, "reworded_question": r, "reword_method": how,
             "paragraph_ids": e["paragraph_ids"], "verbatim": {}, "reworded": {}}
            for e, (_, u, _), (r, how) in zip(examples, turns, reworded)]
    for form in FORMS:
        for m in diagnose.MODELS:
            generations = chat(convs[form], m == "adapter", max_new_tokens) if examples else []
            refs = [_reference(g, a, max_new_tokens) for g, (_, _, a) in zip(generations, turns)]
            sims = scoring.similarities([g.text for g in generations], refs, embed)
            for row, g, sim in zip(rows, generations, sims):
                row[form][m] = {"answer": g.text, "similarity": sim, "right": sim >= diagnose.RIGHT_SIMILARITY}
    return rows


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def summary(rows: list[dict], suite_rows: list[dict]) -> dict:
    """Right rate and mean similarity per model: training questions verbatim, reworded, and the held-out suite."""
    held = [r for r in suite_rows if r["expect"] == "answer"]
    out = {}
    for m in diagnose.MODELS:
        out[m] = {form: _mean([r[form][m]["right"] for r in rows]) for form in FORMS}
        out[m]["heldout"] = _mean([r[m]["right"] for r in held])
        out[m]["similarity"] = {form: _mean([r[form][m]["similarity"] for r in rows]) for form in FORMS}
        out[m]["similarity"]["heldout"] = _mean([r[m]["similarity"] for r in held])
    out["probes"] = len(rows)
    out["reworded_by"] = {k: sum(r["reword_method"] == k for r in rows) for k in ("engine", "template")}
    out["verdict"] = verdict(out)
    return out


def verdict(s: dict) -> str:
    """One sentence on what the three right rates say, from the named thresholds."""
    a, b = s["adapter"], s["base"]
    if s["probes"] == 0 or math.isnan(a["verbatim"]):
        return "No training questions were asked (eval.train_questions is 0 or the training set is empty)."
    if a["verbatim"] < NOT_TAKEN_IN and a["verbatim"] <= b["verbatim"] + 0.1:
        return (f"The adapter did not take the facts in: it answers only {a['verbatim']:.0%} of its own training "
                f"questions right (base {b['verbatim']:.0%}). Train longer or on more varied data.")
    held = a["heldout"] if not math.isnan(a["heldout"]) else 0.0
    if a["verbatim"] - max(a["reworded"], held) > MEMORISED_GAP:
        return (f"Memorised without transfer: {a['verbatim']:.0%} right on training questions as trained, "
                f"{a['reworded']:.0%} reworded, {held:.0%} on held-out questions. Add paraphrases and varied "
                f"questions per fact.")
    return (f"Generalises: {a['verbatim']:.0%} right as trained, {a['reworded']:.0%} reworded, {held:.0%} "
            f"held out (base {b['verbatim']:.0%} / {b['reworded']:.0%} / {b['heldout']:.0%}).")
