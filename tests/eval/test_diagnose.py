"""Knowledge diagnostics on hand-made answer sets: each lands in its outcome, abstentions are counted, the rates
and the build-to-build diff follow, and a weak topic says where to add data."""

from __future__ import annotations

import math

import pytest

from jobs.eval import diagnose

RIGHT = {"answer": "The overlap of the two embedded states.", "concept_recall": 1.0, "similarity": 0.8}
WRONG = {"answer": "A classical Gaussian kernel.", "concept_recall": 0.0, "similarity": 0.3}
HALF = {"answer": "The states overlap.", "concept_recall": 0.5, "similarity": 0.6}  # exactly at both thresholds
ABSTAIN = {"answer": "I don't know; the documents do not say.", "concept_recall": 0.0, "similarity": 0.2}
INVENTED = {"answer": "It reached 97.5% accuracy on MNIST.", "concept_recall": 0.0, "similarity": 0.1}


def _row(qid: str, topic: str, base: dict, adapter: dict, expect: str = "answer", sources=None) -> dict:
    return {"id": qid, "topic": topic, "expect": expect, "question": f"question {qid}?", "reference": "ref",
            "concepts": ["feature map"], "base": dict(base), "adapter": dict(adapter),
            "sources": sources or {"how": "none", "paragraphs": [], "missing": []}}


def _rows() -> list[dict]:
    rows = [_row("k1", "kernels", RIGHT, RIGHT), _row("k2", "kernels", WRONG, RIGHT),
            _row("k3", "kernels", RIGHT, WRONG), _row("k4", "kernels", WRONG, WRONG),
            _row("n1", "noise", WRONG, WRONG), _row("n2", "noise", WRONG, HALF),
            _row("a1", "noise", INVENTED, ABSTAIN, expect="abstain"), _row("a2", "noise", ABSTAIN, INVENTED, "abstain")]
    diagnose.judge(rows)
    return rows


def test_each_hand_made_answer_set_lands_in_its_outcome():
    rows = {r["id"]: r for r in _rows()}
    assert [rows[q]["outcome"] for q in ("k1", "k2", "k3", "k4", "n1", "n2")] == \
        ["knew", "learned", "forgotten", "never", "never", "learned"]
    assert rows["a1"]["outcome"] is None and rows["a1"]["adapter"]["right"] and not rows["a1"]["base"]["right"]
    assert rows["a2"]["base"]["abstained"] and not rows["a2"]["adapter"]["abstained"]


def test_an_answer_that_abstains_is_never_right_on_an_answerable_question():
    declining = dict(RIGHT, answer="I am not sure. The overlap of the two embedded states, maybe.")
    assert not diagnose.is_right(declining, "answer") and diagnose.is_right(declining, "abstain")
    assert diagnose.is_right(RIGHT, "answer") and not diagnose.is_right(RIGHT, "abstain")


@pytest.mark.parametrize("answer, declines", [
    ("I don't know.", True), ("I do not know the T1 of that device.", True),
    ("The documents do not report an MNIST experiment.", True), ("That is not mentioned in the thesis.", True),
    ("I’m not sure which optimiser was used.", True),  # typographic apostrophe
    ("No lo sé: los documentos no lo dicen.", True),
    ("A fidelity kernel is the overlap of two states.", False),
    ("It is 0.84. The thesis does not say how long it took.", False),  # answers first, declines a detail later
    ("", False),
])
def test_abstention_is_read_from_the_opening_sentences(answer, declines):
    assert diagnose.abstains(answer) is declines


def test_outcome_table_and_headline_rates():
    rows = _rows()
    table = diagnose.outcome_table(rows)
    assert table["overall"] == {"knew": ["k1"], "learned": ["k2", "n2"], "forgotten": ["k3"], "never": ["k4", "n1"]}
    assert list(table["topics"]) == ["kernels", "noise"] and table["topics"]["noise"]["learned"] == ["n2"]
    probes = {"adapter": {"verbatim": 1.0, "reworded": 0.5}, "base": {"verbatim": 0.0, "reworded": 0.0}}
    h = diagnose.headline(rows, {"adapter": 0.25, "base": 0.5}, probes)
    assert h["right_rate"] == pytest.approx(3 / 6) and h["base_right_rate"] == pytest.approx(2 / 6)
    assert h["learned_rate"] == pytest.approx(2 / 4)  # of the 4 the base got wrong, 2 are right now
    assert h["forgotten_rate"] == pytest.approx(1 / 2)  # of the 2 the base got right, 1 is wrong now
    assert h["abstention_rate"] == 0.5 and h["base_abstention_rate"] == 0.5
    assert h["false_abstention_rate"] == 0.0
    assert h["delta_unsupported_rate"] == pytest.approx(-0.25) and h["delta_train_verbatim_right"] == 1.0


def test_rates_without_the_items_they_need_are_nan():
    rows = [_row("k1", "kernels", RIGHT, RIGHT)]
    diagnose.judge(rows)
    probes = {m: {"verbatim": math.nan, "reworded": math.nan} for m in ("adapter", "base")}
    h = diagnose.headline(rows, {"adapter": math.nan, "base": math.nan}, probes)
    assert math.isnan(h["abstention_rate"]) and math.isnan(h["learned_rate"]) and h["forgotten_rate"] == 0.0


def test_question_diff_lists_lost_and_gained_with_both_answers():
    previous, current = _rows(), _rows()
    by_id = {r["id"]: r for r in current}
    by_id["k1"]["adapter"] = dict(WRONG)  # lost
    by_id["k4"]["adapter"] = dict(RIGHT)  # gained
    by_id["a2"]["adapter"] = dict(ABSTAIN)  # an abstain item, gained by abstaining
    previous = [r for r in previous if r["id"] != "n1"]  # n1 is new in this build
    diff = diagnose.question_diff(previous, current)
    assert [c["id"] for c in diff["lost"]] == ["k1"] and [c["id"] for c in diff["gained"]] == ["k4", "a2"]
    lost = diff["lost"][0]
    assert lost["previous"]["answer"] == RIGHT["answer"] and lost["current"]["answer"] == WRONG["answer"]
    assert diff["new_questions"] == ["n1"] and diff["dropped_questions"] == []
    assert diff["still_right"] == 3 and diff["still_wrong"] == 1  # k2, n2, a1 right both times; k3 wrong both


def test_question_diff_reads_reports_written_before_the_diagnostics():
    old = [{"id": "k1", "topic": "kernels", "question": "q?", "adapter": dict(RIGHT), "base": dict(WRONG)}]
    new = [dict(old[0], adapter=dict(WRONG))]
    assert [c["id"] for c in diagnose.question_diff(old, new)["lost"]] == ["k1"]


def test_where_to_add_data_names_keywords_paragraphs_and_missing_references():
    trained = {"id": "doc.md#kernels#p0", "source_path": "doc.md", "split": "trained on",
               "train_examples": 3}
    held = dict(trained, id="doc.md#kernels#p1", split="held out", train_examples=0)
    rows = _rows() + [_row("k5", "kernels", WRONG, WRONG)]  # kernels: learned 1 of 3; noise: 1 of 2 (not low)
    diagnose.judge(rows)
    for r in rows:
        if r["topic"] == "kernels":
            r["sources"] = {"how": "referenced", "paragraphs": [trained, held], "missing": ["doc.md#kernels#p7"]}
    rows[0]["reference"] = "The feature map prepares the states; fidelity is their overlap."
    stats = {"keyword_coverage": {"feature map": {"examples": 12, "paragraphs": 4}},
             "fact_coverage": {"facts": 40, "facts_with_questions": 31}}
    advice = diagnose.where_to_add_data(rows, diagnose.outcome_table(rows), stats,
                                        ["feature map", "fidelity", "decoherence"])
    assert [t["topic"] for t in advice["topics"]] == ["kernels"]
    kernels = advice["topics"][0]
    assert kernels["learned_rate"] == pytest.approx(1 / 3) and kernels["questions"] == ["k4", "k5"]
    assert kernels["keywords"] == [{"keyword": "feature map", "examples": 12, "paragraphs": 4},
                                   {"keyword": "fidelity", "examples": 0, "paragraphs": 0}]
    # The paragraph no training example drew on comes first: that is where data is missing.
    assert [(p["id"], p["train_examples"]) for p in kernels["paragraphs"]] == [("doc.md#kernels#p1", 0),
                                                                               ("doc.md#kernels#p0", 3)]
    assert kernels["missing_references"] == ["doc.md#kernels#p7"] and kernels["no_sources"] == []
    assert advice["fact_coverage"] == {"facts": 40, "facts_with_questions": 31}


def test_a_short_apology_hands_over_to_the_next_sentence():
    assert diagnose.abstains("I'm sorry. The documents do not contain that figure.")
    assert not diagnose.abstains("I'm sorry. The figure is 0.84 on eight qubits.")
