"""The regression gate: may this build be promoted? Spec `eval.gate` in, gate.json out.

    eval:
      gate:
        min: {concept_recall: 0.30, similarity: 0.50, abstention_rate: 0.5}   # the adapter must reach these
        max_regression: {concept_recall: 0.05, perplexity: 2.0}   # and may fall at most this far behind
                                                                  # the previous build (absolute units)

For lower-is-better metrics (perplexity, repetition_rate) a regression is a rise; they cannot take a `min`.
Metric names and values are checked when the spec loads (jobs/core/spec/load.py). Without a previous build the
regression checks are recorded as skipped (and pass): the first build has nothing to regress from.
"""

from __future__ import annotations

import math

from jobs.core.spec.metrics import LOWER_IS_BETTER, arm_metric
from jobs.core.spec.schema import GateSpec


def evaluate_gate(gate: GateSpec, headline: dict, previous: dict | None) -> dict:
    """Every check with its numbers; `previous` is the previous build's headline (None for a first build)."""
    checks = []
    for metric, threshold in sorted(gate.min.items()):
        value = headline.get(metric, math.nan)
        ok = not math.isnan(value) and value >= threshold
        message = f"{metric} {value:.4f} {'>=' if ok else '<'} minimum {threshold:.4f}"
        if math.isnan(value):  # e.g. abstention_rate with no `expect: abstain` item in the suite
            message = f"{metric} was not measured in this build (the suite or dataset lacks what it needs); " \
                      f"minimum {threshold:.4f} not met"
        checks.append({"metric": metric, "kind": "min", "threshold": threshold, "value": value,
                       "previous": None, "passed": ok, "skipped": False, "message": message})
    for metric, allowed in sorted(gate.max_regression.items()):
        value = headline.get(metric, math.nan)
        before = None if previous is None else previous.get(metric)
        if before is None:
            why = "no previous build" if previous is None else "the previous build did not measure it"
            checks.append({"metric": metric, "kind": "max_regression", "threshold": allowed, "value": value,
                           "previous": None, "passed": True, "skipped": True,
                           "message": f"{metric}: regression check skipped ({why})"})
            continue
        # A regression is a drop for higher-is-better metrics and a rise for lower-is-better ones.
        lower = arm_metric(metric)[1] in LOWER_IS_BETTER  # rag_repetition_rate is as lower-is-better as its arm's
        regression = (value - before) if lower else (before - value)
        ok = not math.isnan(regression) and regression <= allowed + 1e-12
        word = "rose" if lower else "fell"
        message = f"{metric} {word} by {max(regression, 0.0):.4f} vs previous build ({before:.4f} -> {value:.4f}); " \
                  f"allowed {allowed:.4f}"
        if math.isnan(value):
            message = f"{metric} was not measured in this build (previous build: {before:.4f}); regression check failed"
        checks.append({"metric": metric, "kind": "max_regression", "threshold": allowed, "value": value,
                       "previous": before, "passed": ok, "skipped": False, "message": message})
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def gate_summary(result: dict) -> str:
    """A few lines for the terminal: verdict first, then each check."""
    verdict = "PASSED" if result["passed"] else "FAILED"
    lines = [f"gate {verdict} ({sum(not c['passed'] for c in result['checks'])} of {len(result['checks'])} "
             f"check(s) failed)"]
    for c in result["checks"]:
        mark = "skip" if c["skipped"] else ("ok  " if c["passed"] else "FAIL")
        lines.append(f"  [{mark}] {c['message']}")
    if not result["checks"]:
        lines.append("  (no checks: the spec's eval.gate is empty)")
    return "\n".join(lines)
