"""The source paragraphs of each suite question, from the build's dataset.

A question's sources are the paragraphs its suite item references (`paragraphs:` ids) that the dataset holds;
when it references none, or none of them reached the dataset, the NEAREST_PARAGRAPHS paragraphs of its source
document nearest to the question and reference (MiniLM). An `expect: abstain` item has no sources. Referenced ids
the dataset lacks are listed: curate did not select them, which is itself a reason a topic is not learned.
"""

from __future__ import annotations

from jobs.core.text.embed import Embedder
from jobs.core.spec.suite import Question
from jobs.eval.dataset import same_source

NEAREST_PARAGRAPHS = 3
# What a question's row records of each source paragraph; the text stays in the dataset (looked up by id).
FIELDS = ("id", "source_path", "split", "train_examples")  # the id names the document and section


def question_sources(questions: list[Question], paragraphs: list[dict], embed: Embedder) -> list[dict]:
    """Per question: {"how": referenced | nearest | none, "paragraphs": [FIELDS + similarity], "missing": [ids]}."""
    by_id = {p["id"]: i for i, p in enumerate(paragraphs)}
    vectors = embed([p["text"] for p in paragraphs])
    queries = embed([q.question + "\n" + q.reference for q in questions])
    out = []
    for q, query in zip(questions, queries):
        missing = [pid for pid in q.paragraphs if pid not in by_id]
        if q.expect == "abstain":
            out.append({"how": "none", "paragraphs": [], "missing": []})
            continue
        chosen = [by_id[pid] for pid in q.paragraphs if pid in by_id]
        how = "referenced"
        if not chosen:
            same = [i for i, p in enumerate(paragraphs) if same_source(q.source, p["source_path"])]
            chosen = sorted(same, key=lambda i: (-float(vectors[i] @ query), i))[:NEAREST_PARAGRAPHS]
            how = "nearest" if chosen else "none"
        out.append({"how": how, "missing": missing,
                    "paragraphs": [{k: paragraphs[i][k] for k in FIELDS} | {"similarity": float(vectors[i] @ query)}
                                   for i in chosen]})
    return out
