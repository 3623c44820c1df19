"""A question's sources: the paragraphs its suite item references, else the paragraphs of its source document that
the build's retrieval index ranks first; without an index, the referenced ones only."""

from __future__ import annotations

import pytest

from jobs.core.retrieval.hybrid import Index, write_index
from jobs.core.spec.suite import Question
from jobs.eval.sources import NEAREST_PARAGRAPHS, paragraph_ranks, question_sources
from tests.core.retrieval.test_hybrid import bag_embed, row

K, N = "thesis/k.tex", "notes/n.md"
CATALOGUE = [  # every paragraph curate parsed: what the index holds
    row("k.tex#k#p0", "Kernel values concentrate with many qubits.", source=K),
    row("k.tex#k#p1", "The fidelity kernel is the overlap of two encoded states.", source=K),
    row("k.tex#k#p2", "Alignment compares the Gram matrix with labels.", source=K),
    row("k.tex#k#p3", "Shot noise limits small kernel values.", source=K),
    # Not selected by curate, so not in the dataset: the index ranks it, the lookup never returns it.
    row("k.tex#k#p4", "The fidelity kernel is the overlap of two encoded states, read off a swap test.", source=K),
    row("n.md#n#p0", "The fidelity kernel of two encoded states drops on a noisy device.", source=N, section="Noise"),
]
DATASET = [{"id": r["id"], "text": r["text"], "source_path": r["source_path"], "section": r["section"],
            "split": "trained on", "train_examples": 1} for r in CATALOGUE if r["id"] != "k.tex#k#p4"]


def _q(qid: str, question: str, reference: str = "reference", source: str = "data/raw/thesis/k.tex", paragraphs=(),
       expect="answer"):
    return Question(qid, question, reference, (), "t", source, expect, tuple(paragraphs))


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Index:
    folder = tmp_path_factory.mktemp("sources") / "index"
    write_index(CATALOGUE, folder, {"minilm": bag_embed})
    return Index.load(folder, {"minilm": bag_embed})


def test_paragraph_ranks_follow_the_index_hybrid_ranking(index):
    query = "What is the fidelity kernel?\nThe overlap of two encoded states."
    ranks = paragraph_ranks(index, query)
    order = [h.passage.ids[0] for h in index.search(query, k=len(index.passages))]  # what the arms are given
    assert list(ranks) == order and list(ranks.values()) == list(range(1, len(CATALOGUE) + 1))
    assert order[:2] == ["k.tex#k#p1", "k.tex#k#p4"]


def test_referenced_paragraphs_win_with_their_rank_and_missing_ones_are_listed(index):
    q = _q("a", "What does alignment compare?", "The Gram matrix with the labels.",
           paragraphs=["k.tex#k#p2", "k.tex#k#p9"])
    found = question_sources([q], DATASET, index)[0]
    assert found["how"] == "referenced" and found["missing"] == ["k.tex#k#p9"]
    assert found["paragraphs"] == [{"id": "k.tex#k#p2", "source_path": K, "split": "trained on", "train_examples": 1,
                                    "rank": 1}]


def test_without_references_the_best_ranked_paragraphs_of_the_same_document_in_the_dataset(index):
    q = _q("a", "What is the fidelity kernel?", "The overlap of two encoded states.")
    found = question_sources([q], DATASET, index)[0]
    ranks = paragraph_ranks(index, q.question + "\n" + q.reference)
    assert found["how"] == "nearest" and len(found["paragraphs"]) == NEAREST_PARAGRAPHS
    ids = [p["id"] for p in found["paragraphs"]]
    # The index ranks k.tex#k#p4 second (the dataset lacks it) and the noise notes' paragraph third (another
    # document): the lookup passes over both, in the index's order.
    assert list(ranks)[:3] == ["k.tex#k#p1", "k.tex#k#p4", "n.md#n#p0"]
    assert ids == ["k.tex#k#p1", "k.tex#k#p0", "k.tex#k#p2"]
    assert [p["rank"] for p in found["paragraphs"]] == [ranks[i] for i in ids] == [1, 4, 5]
    assert all(p["source_path"] == K for p in found["paragraphs"])
    # A reference that did not reach the dataset falls back to the ranked paragraphs, and is still listed.
    fallback = question_sources([_q("b", q.question, q.reference, paragraphs=["k.tex#k#p4"])], DATASET, index)[0]
    assert fallback["how"] == "nearest" and [p["id"] for p in fallback["paragraphs"]] == ids
    assert fallback["missing"] == ["k.tex#k#p4"]


def test_without_an_index_only_referenced_paragraphs_are_sources():
    referenced, unreferenced = question_sources(
        [_q("a", "What does alignment compare?", paragraphs=["k.tex#k#p2"]), _q("b", "What is the fidelity kernel?")],
        DATASET, None)
    assert referenced["how"] == "referenced" and referenced["paragraphs"] == [
        {"id": "k.tex#k#p2", "source_path": K, "split": "trained on", "train_examples": 1, "rank": None}]
    assert unreferenced == {"how": "none", "paragraphs": [], "missing": []}


def test_abstain_items_and_unknown_documents_have_no_sources(index):
    absent, elsewhere = question_sources([_q("a", "Who supervised it?", source="", expect="abstain"),
                                          _q("b", "What is the fidelity kernel?", source="data/raw/other.md")],
                                         DATASET, index)
    assert absent == {"how": "none", "paragraphs": [], "missing": []}
    assert elsewhere == {"how": "none", "paragraphs": [], "missing": []}
