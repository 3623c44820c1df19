"""The gate both ways: minimums and regressions against the previous build, direction-aware."""

from __future__ import annotations

import pytest

from jobs.core.spec.schema import GateSpec
from jobs.eval.gate import evaluate_gate, gate_summary

GATE = GateSpec(min={"concept_recall": 0.3, "similarity": 0.5},
                max_regression={"concept_recall": 0.05, "perplexity": 2.0})
PREVIOUS = {"concept_recall": 0.60, "similarity": 0.70, "perplexity": 10.0}


def test_gate_passes_when_scores_clear_every_check():
    result = evaluate_gate(GATE, {"concept_recall": 0.58, "similarity": 0.71, "perplexity": 11.5}, PREVIOUS)
    assert result["passed"] is True
    assert [c["passed"] for c in result["checks"]] == [True, True, True, True]
    assert "gate PASSED" in gate_summary(result)


def test_gate_fails_on_minimum_and_on_regression():
    result = evaluate_gate(GATE, {"concept_recall": 0.50, "similarity": 0.45, "perplexity": 12.5}, PREVIOUS)
    assert result["passed"] is False
    failed = {(c["kind"], c["metric"]) for c in result["checks"] if not c["passed"]}
    # recall 0.50 clears its minimum but fell 0.10 > 0.05; perplexity rose 2.5 > 2.0 (lower is better).
    assert failed == {("min", "similarity"), ("max_regression", "concept_recall"), ("max_regression", "perplexity")}
    summary = gate_summary(result)
    assert summary.startswith("gate FAILED (3 of 4")
    assert "perplexity rose by 2.5000" in summary and "similarity 0.4500 < minimum 0.5000" in summary


def test_falling_perplexity_is_not_a_regression():
    result = evaluate_gate(GateSpec(max_regression={"perplexity": 0.0}), {"perplexity": 5.0}, PREVIOUS)
    assert result["passed"]


def test_first_build_skips_regression_checks():
    result = evaluate_gate(GATE, {"concept_recall": 0.4, "similarity": 0.6, "perplexity": 50.0}, None)
    assert result["passed"]
    skipped = [c for c in result["checks"] if c["skipped"]]
    assert len(skipped) == 2 and "no previous build" in skipped[0]["message"]


def test_missing_metric_fails_a_minimum():
    assert evaluate_gate(GateSpec(min={"bleu": 0.1}), {}, None)["passed"] is False


def test_a_minimum_abstention_rate():
    gate = GateSpec(min={"abstention_rate": 0.6}, max_regression={"unsupported_rate": 0.05})
    result = evaluate_gate(gate, {"abstention_rate": 0.4, "unsupported_rate": 0.30}, {"unsupported_rate": 0.20})
    failed = {c["metric"]: c["message"] for c in result["checks"] if not c["passed"]}
    # unsupported claims are lower-is-better: a rise of 0.10 is a regression
    assert failed == {"abstention_rate": "abstention_rate 0.4000 < minimum 0.6000",
                      "unsupported_rate": "unsupported_rate rose by 0.1000 vs previous build (0.2000 -> 0.3000); "
                                          "allowed 0.0500"}
    nan = float("nan")
    unmeasured = evaluate_gate(GateSpec(min={"abstention_rate": 0.6}, max_regression={"unsupported_rate": 0.1}),
                               {"abstention_rate": nan, "unsupported_rate": nan}, {"unsupported_rate": 0.2})
    assert not unmeasured["passed"]
    assert [c["message"].split(" (")[0] for c in unmeasured["checks"]] == [
        "abstention_rate was not measured in this build", "unsupported_rate was not measured in this build"]
    skipped = evaluate_gate(GateSpec(max_regression={"unsupported_rate": 0.1}), {"unsupported_rate": 0.3},
                            {"unsupported_rate": None})["checks"][0]  # null in the previous build's metrics.json
    assert skipped["skipped"] and "the previous build did not measure it" in skipped["message"]
