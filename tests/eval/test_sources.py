"""A question's sources: the paragraphs its suite item references, else the nearest of its source document."""

from __future__ import annotations

from jobs.core.spec.suite import Question
from jobs.eval.sources import NEAREST_PARAGRAPHS, question_sources

from .test_faithfulness import bag_of_words


def _p(pid: str, text: str, source: str) -> dict:
    return {"id": pid, "text": text, "source_path": source, "section": "S", "split": "trained on", "train_examples": 1}


PARAGRAPHS = [_p("k.tex#k#p0", "Kernel values concentrate with many qubits.", "thesis/k.tex"),
              _p("k.tex#k#p1", "The fidelity kernel is the overlap of two states.", "thesis/k.tex"),
              _p("k.tex#k#p2", "Alignment compares the Gram matrix with labels.", "thesis/k.tex"),
              _p("k.tex#k#p3", "Shot noise limits small kernel values.", "thesis/k.tex"),
              _p("n.md#n#p0", "The fidelity of a noisy gate is lower.", "notes/n.md")]


def _q(qid: str, question: str, source: str = "data/raw/thesis/k.tex", paragraphs=(), expect="answer"):
    return Question(qid, question, "reference", (), "t", source, expect, tuple(paragraphs))


def test_referenced_paragraphs_win_and_missing_ones_are_listed():
    found = question_sources([_q("a", "What is the fidelity kernel?", paragraphs=["k.tex#k#p2", "k.tex#k#p9"])],
                             PARAGRAPHS, bag_of_words)[0]
    assert found["how"] == "referenced" and [p["id"] for p in found["paragraphs"]] == ["k.tex#k#p2"]
    assert found["missing"] == ["k.tex#k#p9"]


def test_without_references_the_nearest_paragraphs_of_the_same_document():
    found = question_sources([_q("a", "What is the fidelity kernel overlap?")], PARAGRAPHS, bag_of_words)[0]
    assert found["how"] == "nearest" and len(found["paragraphs"]) == NEAREST_PARAGRAPHS
    assert found["paragraphs"][0]["id"] == "k.tex#k#p1"
    assert all(p["source_path"] == "thesis/k.tex" for p in found["paragraphs"])  # never the noise notes
    # A reference that did not reach the dataset falls back to the nearest paragraphs, and is still listed.
    fallback = question_sources([_q("b", "Fidelity kernel?", paragraphs=["k.tex#k#p9"])], PARAGRAPHS, bag_of_words)[0]
    assert fallback["how"] == "nearest" and fallback["missing"] == ["k.tex#k#p9"]


def test_abstain_items_and_unknown_documents_have_no_sources():
    absent, elsewhere = question_sources([_q("a", "Who supervised it?", source="", expect="abstain"),
                                          _q("b", "What?", source="data/raw/other.md")], PARAGRAPHS, bag_of_words)
    assert absent == {"how": "none", "paragraphs": [], "missing": []}
    assert elsewhere["how"] == "none" and elsewhere["paragraphs"] == []
