"""A file of question-answer pairs a user already has (jobs/core/spec/qa_pairs.py) as the build's eval questions:
each pair's answer is the reference; concepts are the answer's distinctive terms; the paragraph is the one of the
documents that shares the most of them (none below MIN_OVERLAP: the question then names no paragraph). The
mapping is a machine's guess, so every question is `status: draft` until reviewed.
"""

from __future__ import annotations

from pathlib import Path

from jobs.core.spec.qa_pairs import read_pairs
from jobs.new.draft import Item, concept, topic_levels, topic_of
from jobs.new.keywords import Terms, words

MIN_OVERLAP = 0.3  # share of the answer's distinctive terms that its paragraph must contain


def best_paragraph(answer: str, terms: Terms, rows: list[dict]) -> dict | None:
    wanted = set(terms.in_text(answer, 8))
    if not wanted:
        return None
    scored = []
    for r in rows:
        text = " ".join(words(r["text"]))
        share = sum(1 for t in wanted if f" {t} " in f" {text} ") / len(wanted)
        scored.append((share, r["id"], r))
    share, _, row = max(scored, key=lambda x: (x[0], x[1]), default=(0.0, "", None))
    return row if share >= MIN_OVERLAP else None


def items_from_pairs(path: Path, terms: Terms, rows: list[dict]) -> tuple[list[Item], list[str]]:
    """(items, notes): one draft question per pair; a pair whose answer names no distinctive term is skipped."""
    items, notes = [], []
    levels = topic_levels(rows)
    for n, pair in read_pairs(path):
        found = terms.in_text(pair["answer"], 3) or terms.in_text(pair["question"], 3)
        if not found:
            notes.append(f"{path.name} line {n}: no term of the documents in it, skipped (write its concepts by hand)")
            continue
        row = best_paragraph(pair["answer"], terms, rows)
        topic = topic_of(row, levels.get(row["source_path"], 0)) if row else "qa"
        item = Item(id=f"qa-{n:03d}", question=pair["question"], reference=pair["answer"],
                    concepts=[concept(t, terms) for t in found], topic=topic,
                    source=pair["source"] or (row["source_path"] if row else ""), paragraph=row or {},
                    sentence="", how="user")
        items.append(item)
    return items, notes
