"""The source paragraphs of each suite question, from the build's dataset, ranked by the build's retrieval index.

A question's sources are the paragraphs its suite item references (`paragraphs:` ids) that the dataset holds.
When it references none, or none of them reached the dataset, they are the NEAREST_PARAGRAPHS paragraphs of its
source document that the dataset holds, best first in the build's index's hybrid ranking (jobs/core/retrieval/
hybrid.py, the ranking the retrieval arms use: one index ranks both) of the question with its reference answer
(the lookup knows the answer and looks for where it is written; the arms send the question alone). Each source
paragraph carries its rank in that ranking. An `expect: abstain` item has no sources. Referenced ids the dataset
lacks are listed: curate did not select them, which is itself a reason a topic is not learned.

A build without an index (a spec without `retrieval:`, so no `python -m jobs.index` stage) has referenced sources
only: the index replaces the MiniLM lookup eval ran after the fact (issue 27), and there is no second ranking to
keep in step with it. A question without `paragraphs:` ids then has no sources (how "none", rank null), so its
answers are listed as not checked for faithfulness and the topic's `no_sources` names it. To have them checked,
give the suite items their ids (`make new` drafts them) or the spec a `retrieval:` section.
"""

from __future__ import annotations

from jobs.core.retrieval.hybrid import Index
from jobs.core.spec.suite import Question
from jobs.eval.dataset import same_source

NEAREST_PARAGRAPHS = 3
# What a question's row records of each source paragraph; the text stays in the dataset (looked up by id).
FIELDS = ("id", "source_path", "split", "train_examples")  # the id names the document and section


def paragraph_ranks(index: Index, query: str) -> dict[str, int]:
    """Paragraph id -> 1-based rank of the first passage quoting it in the index's hybrid ranking, best first."""
    order, _ = index.ranking(query, "hybrid")
    ranks: dict[str, int] = {}
    for rank, i in enumerate(order, start=1):
        for pid in index.passages[i].ids:
            ranks.setdefault(pid, rank)
    return ranks


def question_sources(questions: list[Question], paragraphs: list[dict], index: Index | None) -> list[dict]:
    """Per question: {"how": referenced | nearest | none, "paragraphs": [FIELDS + rank], "missing": [ids]}."""
    by_id = {p["id"]: p for p in paragraphs}
    out = []
    for q in questions:
        if q.expect == "abstain":
            out.append({"how": "none", "paragraphs": [], "missing": []})
            continue
        ranks = paragraph_ranks(index, q.question + "\n" + q.reference) if index is not None else {}
        chosen = [pid for pid in q.paragraphs if pid in by_id]
        how = "referenced"
        if not chosen:
            chosen = [pid for pid in ranks if pid in by_id and same_source(q.source, by_id[pid]["source_path"])]
            chosen = chosen[:NEAREST_PARAGRAPHS]
            how = "nearest" if chosen else "none"
        out.append({"how": how, "missing": [pid for pid in q.paragraphs if pid not in by_id],
                    "paragraphs": [{k: by_id[pid][k] for k in FIELDS} | {"rank": ranks.get(pid)} for pid in chosen]})
    return out
