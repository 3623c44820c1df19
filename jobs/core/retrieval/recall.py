"""Question sets for retrieval and how well an index finds their source paragraphs: recall@k and MRR per topic.

A question set is YAML with `questions:`, each with `id`, `question`, and optionally `topic`, `paragraphs` (the
source paragraph ids, as curate writes them) and `expect` (answer | abstain); other keys (an eval suite's
`reference`, `concepts`, `source`) are allowed and ignored, so every eval suite is a question set too. Read with
the bounded YAML reader; every problem is reported at once.

A question counts for recall when it has paragraph ids and does not expect abstention; it is found at rank r
when the r-th passage quotes one of its paragraphs. MRR is the mean of 1/r over the whole ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs.core.errors import QslmError
from jobs.core.spec.yamlfile import brief, problems, read_yaml

MAX_QUESTIONS = 5000
MAX_CHARS = 4000  # per question: ~1,000 tokens
RECALL_AT = (1, 5)  # the cut-offs reported: recall@1 and recall@5


class QuestionSetError(QslmError):
    """A question-set file that cannot be used."""


@dataclass(frozen=True)
class Query:
    id: str
    question: str
    topic: str = ""
    paragraphs: tuple[str, ...] = ()
    expect: str = "answer"

    @property
    def scored(self) -> bool:
        return bool(self.paragraphs) and self.expect != "abstain"


def load_questions(path: Path) -> list[Query]:
    data, _ = read_yaml(path, QuestionSetError, "question set")
    items = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise QuestionSetError(f"{path}: give a mapping with a non-empty list `questions:` "
                               f"(each with id and question)")
    errors, out, seen = [], [], set()
    for n, q in enumerate(items[:MAX_QUESTIONS + 1], start=1):
        where = f"questions[{n}]"
        if not isinstance(q, dict):
            errors.append(f"{where}: a mapping with id and question, got {brief(q)}")
            continue
        qid, text = q.get("id"), q.get("question")
        paragraphs = q.get("paragraphs") or []
        if not isinstance(qid, str) or not qid or qid in seen:
            errors.append(f"{where}: id must be a unique non-empty string, got {brief(qid)}")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_CHARS:
            errors.append(f"{where}: question must be a non-empty string of at most {MAX_CHARS} characters")
        if not isinstance(paragraphs, list) or not all(isinstance(p, str) for p in paragraphs):
            errors.append(f"{where}: paragraphs must be a list of paragraph ids, got {brief(paragraphs)}")
            paragraphs = []
        if q.get("expect", "answer") not in ("answer", "abstain"):
            errors.append(f"{where}: expect must be answer or abstain, got {brief(q.get('expect'))}")
        if not isinstance(q.get("topic", ""), str):
            errors.append(f"{where}: topic must be a string")
        seen.add(qid)
        out.append(Query(str(qid), str(text), str(q.get("topic") or ""), tuple(paragraphs),
                         str(q.get("expect", "answer"))))
    if len(items) > MAX_QUESTIONS:
        errors.append(f"questions: at most {MAX_QUESTIONS}, got {len(items)}; split the file")
    if errors:
        raise QuestionSetError(problems(path, "question set", errors))
    return out


def first_rank(ranked_ids: list[tuple[str, ...]], wanted: tuple[str, ...]) -> int | None:
    """1-based rank of the first passage quoting one of `wanted`, or None."""
    wanted_set = set(wanted)
    return next((r for r, ids in enumerate(ranked_ids, start=1) if wanted_set.intersection(ids)), None)


def summarize(ranks: list[tuple[Query, int | None]]) -> dict:
    """recall@k and MRR over the scored questions, overall and per topic: {"overall": {...}, "topics": {...}}."""
    def stats(rows: list[int | None]) -> dict:
        out = {f"recall@{k}": float(np.mean([r is not None and r <= k for r in rows])) for k in RECALL_AT}
        out["mrr"] = float(np.mean([1.0 / r if r else 0.0 for r in rows]))
        out["questions"] = len(rows)
        return out

    scored = [(q, r) for q, r in ranks if q.scored]
    if not scored:
        return {"overall": {}, "topics": {}}
    topics = sorted({q.topic for q, _ in scored})
    return {"overall": stats([r for _, r in scored]),
            "topics": {t: stats([r for q, r in scored if q.topic == t]) for t in topics}}
