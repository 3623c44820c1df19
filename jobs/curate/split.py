"""The held-out split. By section where the documents have enough sections (a section feeds train or eval, never
both, so no held-out text reaches training as another paragraph's context); by paragraph where they have few (a
held-out paragraph's examples go to eval, and a training example that would quote it as context is left out).
Paragraphs the build's eval suite asks about are never held out: the suite measures what the build should learn,
so they are trained on (held-out text is for perplexity and the eval split).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

MIN_SECTIONS = 5  # fewer sections that may be held out: split by paragraph (1 of 2 sections is half the documents)


def paragraph_section(paragraph_id: str) -> str:
    # Paragraph ids are `<document>#<section path>#p<index>`; context never leaves its section.
    return paragraph_id.rsplit("#p", 1)[0]


def section_key(row: dict) -> str:
    return paragraph_section(row["paragraph_ids"][0])


def _order(keys, seed: int) -> list[str]:
    return sorted(keys, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())


def _count(eval_fraction: float, total: int, eligible: int) -> int:
    n = round(eval_fraction * total)
    if eval_fraction > 0 and n == 0 and eligible >= 2:
        n = 1
    return min(n, eligible)


@dataclass
class Split:
    train: list[dict]
    evals: list[dict]
    by: str  # "section" | "paragraph"
    sections: list[str] = field(default_factory=list)  # held-out section keys (by section)
    paragraphs: list[str] = field(default_factory=list)  # held-out paragraph ids (by paragraph)
    left_out: int = 0  # training examples left out because a held-out paragraph is in their context
    note: str = ""

    def held(self, paragraph_id: str) -> bool:
        return paragraph_id in set(self.paragraphs) or paragraph_section(paragraph_id) in set(self.sections)


def split_rows(rows: list[dict], eval_fraction: float, seed: int, protected: set[str] = frozenset()) -> Split:
    """Hold out round(eval_fraction * sections) sections, chosen by a seeded hash among those that hold no
    `protected` paragraph, when at least MIN_SECTIONS may be held out; else as many paragraphs by the same rule."""
    sections = sorted({section_key(r) for r in rows})
    guarded = {paragraph_section(p) for p in protected}
    eligible = [s for s in sections if s not in guarded]
    kept_note = f"; {len(sections) - len(eligible)} section(s) the eval suite asks about stay in training" \
        if len(eligible) < len(sections) else ""
    if len(eligible) >= MIN_SECTIONS:
        held = set(_order(eligible, seed)[:_count(eval_fraction, len(sections), len(eligible))])
        return Split([r for r in rows if section_key(r) not in held], [r for r in rows if section_key(r) in held],
                     "section", sections=sorted(held),
                     note=f"held out {len(held)} of {len(sections)} sections whole{kept_note}")
    mains = sorted({r["paragraph_ids"][0] for r in rows})
    candidates = [p for p in mains if p not in protected]
    held_p = set(_order(candidates, seed)[:_count(eval_fraction, len(mains), len(candidates))])
    evals = [r for r in rows if r["paragraph_ids"][0] in held_p]
    train = [r for r in rows if not held_p & set(r["paragraph_ids"])]
    left_out = len(rows) - len(train) - len(evals)
    return Split(train, evals, "paragraph", paragraphs=sorted(held_p), left_out=left_out,
                 note=f"only {len(eligible)} section(s) could be held out (fewer than {MIN_SECTIONS}): held out "
                      f"{len(held_p)} of {len(mains)} paragraphs instead{kept_note}; {left_out} training example(s) "
                      f"that quote a held-out paragraph as context were left out")

