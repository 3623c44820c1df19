"""The four arms' summary: which arm wins each topic and what to ship, rates per arm, citation precision, recall
per topic, and the headline keys under each arm's prefix (jobs/core/spec/load.py ARM_PREFIX)."""

from __future__ import annotations

from types import SimpleNamespace

from jobs.core.retrieval.rag import NOT_COVERED
from jobs.core.retrieval.hybrid import Passage
from jobs.core.spec.metrics import ARMS
from jobs.eval.arms import _citation_precision, summarise_arms


def side(right: bool, answer: str = "an answer", cited=None) -> dict:
    return {"concept_recall": 1.0 if right else 0.0, "similarity": 0.9 if right else 0.1, "rougeL": 0.5, "bleu": 0.1,
            "stopped": True, "repetition": 0.0, "answer": answer, "citation_precision": cited,
            "faithfulness": {"checked": True, "claims": 2, "unsupported": 0 if right else 1}}


def row(qid, topic, expect, wins):
    """`wins`: the arms that answer right."""
    answer = NOT_COVERED if expect == "abstain" else "an answer"
    return {"id": qid, "topic": topic, "expect": expect,
            **{arm: side(arm in wins, answer, 1.0 if arm in wins else 0.0) for arm in ARMS}}


def test_the_winner_per_topic_and_the_arm_to_ship():
    rows = [row("a", "kernels", "answer", {"adapter+retrieval", "base+retrieval"}),
            row("b", "kernels", "answer", {"adapter+retrieval"}),
            row("c", "noise", "answer", {"adapter"}),
            row("d", "out", "abstain", set())]
    suite = SimpleNamespace(questions=[SimpleNamespace(id=r["id"], question="q", topic=r["topic"],
                                                        paragraphs=("p",) if r["expect"] == "answer" else (),
                                                        expect=r["expect"]) for r in rows])
    out = summarise_arms(rows, [1, 6, None, None], suite, samples=50, seed=0, timing={})
    assert out["ship"] == "adapter+retrieval" and out["winners"] == {"kernels": "adapter+retrieval", "noise": "adapter"}
    rag = out["overall"]["adapter+retrieval"]
    assert rag["right_rate"]["mean"] == 2 / 3 and rag["abstention_rate"]["mean"] == 1.0
    assert rag["citation_precision"]["mean"] == 2 / 3 and "low" in rag["concept_recall"]
    recall = out["retrieval"]
    assert recall["overall"]["recall@5"] == 1 / 3 and recall["topics"]["kernels"]["mrr"] == 0.5 + 1 / 12
    h = out["headline"]
    assert h["rag_right_rate"] == 2 / 3 and h["base_rag_right_rate"] == 1 / 3 and h["retrieval_recall_at_1"] == 1 / 3
    assert "right_rate" not in h  # the plain arms' headline is eval's own


def test_citation_precision_counts_cited_passages_that_hold_a_source():
    p = [Passage(f"d#s#p{i}", (f"d#s#p{i}",), "d", "s", 0, "train", "en", "t") for i in range(3)]
    assert _citation_precision("see [1] and [3]", p, ("d#s#p2",)) == 0.5
    assert _citation_precision("no citation", p, ("d#s#p2",)) is None
    assert _citation_precision("[2]", p, ()) is None
