"""The held-out split, grouped by source section: a section feeds train or eval, never both."""

from __future__ import annotations

import hashlib


def paragraph_section(paragraph_id: str) -> str:
    # Paragraph ids are `<document>#<section path>#p<index>`; context never leaves its section.
    return paragraph_id.rsplit("#p", 1)[0]


def section_key(row: dict) -> str:
    return paragraph_section(row["paragraph_ids"][0])


def split_by_section(rows: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict], list[str]]:
    """(train rows, eval rows, held-out section keys). Sections are ordered by a seeded hash and the first
    round(eval_fraction * sections) go to eval (at least one when there are two or more sections)."""
    sections = sorted({section_key(r) for r in rows})
    n_eval = round(eval_fraction * len(sections))
    if eval_fraction > 0 and n_eval == 0 and len(sections) >= 2:
        n_eval = 1
    order = sorted(sections, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    held = set(order[:n_eval])
    train = [r for r in rows if section_key(r) not in held]
    evals = [r for r in rows if section_key(r) in held]
    return train, evals, sorted(held)
