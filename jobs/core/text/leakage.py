"""Eval leakage, shared by curate and synthesize: a training example must not nearly copy a question or a
reference answer of ANY eval suite in data/eval/ (a build scored on one suite today may be scored on another
tomorrow), nor of the spec's own suite wherever it lives.

An example leaks when the share of an eval text's word 5-shingles found in the example reaches the threshold.
"""

from __future__ import annotations

from pathlib import Path

from jobs.core.text.neardup import shingles
from jobs.core.repo import REPO_ROOT
from jobs.core.spec.suite import Suite, load_suite

EVAL_DIR = REPO_ROOT / "data" / "eval"


def all_suites(extra: str | Path | None = None) -> list[Suite]:
    """Every suite in data/eval/*.yaml, plus `extra` (the spec's suite) when it lives elsewhere; each is loaded
    by the strict suite loader, so a broken suite file is an error, not a silent gap in the check."""
    paths = sorted(EVAL_DIR.glob("*.yaml"))
    if extra is not None and Path(extra).resolve() not in {p.resolve() for p in paths}:
        paths.append(Path(extra))
    return [load_suite(p) for p in paths]


class LeakageCheck:
    """Index of every eval question and reference (5-shingles), asked once per training text."""

    def __init__(self, suites: list[Suite], threshold: float):
        self.threshold = threshold
        self.probes = [(s.name, q.id, f, sh) for s in suites for q in s.questions
                       for f in ("question", "reference") if (sh := shingles(getattr(q, f)))]
        self.index: dict[str, set[int]] = {}
        for k, (*_, sh) in enumerate(self.probes):
            for s in sh:
                self.index.setdefault(s, set()).add(k)

    def find(self, text: str) -> dict | None:
        """The eval text that `text` nearly copies ({suite, eval_question, field, overlap}), or None."""
        hits: dict[int, int] = {}
        for s in shingles(text):
            for k in self.index.get(s, ()):
                hits[k] = hits.get(k, 0) + 1
        shares = [(n / len(self.probes[k][3]), k) for k, n in hits.items()]
        leaked = [(share, k) for share, k in shares if share >= self.threshold]
        if not leaked:
            return None
        share, k = max(leaked, key=lambda x: (x[0], self.probes[x[1]][:3]))
        suite, qid, field, _ = self.probes[k]
        return {"suite": suite, "eval_question": qid, "field": field, "overlap": round(share, 4)}


def leakage(rows: list[dict], check: LeakageCheck) -> tuple[list[dict], list[dict]]:
    """Split example rows into (kept, removed report): removed rows nearly copy an eval question or answer."""
    kept, removed = [], []
    for r in rows:
        hit = check.find("\n".join(m["content"] for m in r["messages"]))
        if hit:
            removed.append({"id": r["id"], **hit, "paragraph_ids": r["paragraph_ids"]})
        else:
            kept.append(r)
    return kept, removed
