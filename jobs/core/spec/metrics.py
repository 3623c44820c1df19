"""The metric vocabulary: every number eval reports, its direction, whether the gate may name it, and what it
means. One table that the spec's gate check, eval (scores, diagnostics, report, compare), the store's listing and
the workflow's gauges import; a new metric is one row here.
"""

from __future__ import annotations

# What eval measures and the gate may name (eval.gate.min / max_regression), by direction. A regression is a
# drop for the first kind and a rise for the second; lower-is-better metrics cannot take a `min`.
# The knowledge diagnostics (jobs/eval/diagnose.py) add: right_rate (share of answerable questions answered right),
# learned_rate (right now, of those the base got wrong), forgotten_rate (wrong now, of those the base got right),
# abstention_rate (says "not in the documents" on `expect: abstain` items), false_abstention_rate (says so on
# answerable ones), unsupported_rate (answer sentences the source paragraphs do not support), and
# train_verbatim_right / train_reworded_right (right answers to sampled training questions, as trained / reworded).
HIGHER_IS_BETTER = ("concept_recall", "similarity", "rougeL", "bleu", "stop_rate", "right_rate", "learned_rate",
                    "abstention_rate", "train_verbatim_right", "train_reworded_right")
LOWER_IS_BETTER = ("perplexity", "repetition_rate", "forgotten_rate", "unsupported_rate", "false_abstention_rate")
GATED = HIGHER_IS_BETTER + LOWER_IS_BETTER
# The headline metrics, most telling first: the report's summary table, the manifest's `metrics` keys (with
# base_ and delta_ twins), `make list` (the first four) and the workflow's Prometheus gauges (the first two).
HEADLINE = ("concept_recall", "similarity", "rougeL", "perplexity", "bleu", "stop_rate", "repetition_rate",
            "mean_new_tokens")
GATE_FAILED = 3  # eval's exit status when the report is written but the gate did not pass (build: failed-gate)
