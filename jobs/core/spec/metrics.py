"""The metric vocabulary: every number eval reports, which way is better, whether the gate may name it, its label
and what it means. One table that the spec's gate check, eval (scores, diagnostics, report, compare), the store's
listing and the workflow's gauges import; a new metric is one row here.

Keys in metrics.json's flat `headline`: `<name>` is the adapter's value, `base_<name>` the base model's (the adapter
switched off) and `delta_<name>` adapter minus base (`key()`). That prefix is the axis of evaluation arms: an arm
beside `adapter` and `base` (with retrieval, say) adds its prefix to ARMS. Questions carry a review status
(QUESTION_STATUS); a metric over only one status is named by the report, not by a new row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Metric:
    name: str
    better: Literal["higher", "lower", "neither"]  # a regression is a drop (higher) or a rise (lower)
    gateable: bool  # eval.gate may name it (min: higher-is-better only; max_regression: both)
    label: str  # what the report and `make compare` call it
    meaning: str
    kind: Literal["score", "diagnostic", "length", "retrieval"] = "score"


METRICS = (
    # Scores of each answer against the suite's reference, averaged over questions.
    Metric("concept_recall", "higher", True, "concept recall",
           "share of the question's expected concepts (or a synonym) the answer names"),
    Metric("similarity", "higher", True, "semantic similarity", "MiniLM cosine of the answer to the reference"),
    Metric("rougeL", "higher", True, "ROUGE-L", "longest common subsequence F-measure against the reference"),
    Metric("perplexity", "lower", True, "perplexity (held-out)", "of the held-out paragraphs, per token"),
    Metric("bleu", "higher", True, "BLEU", "sentence BLEU against the reference"),
    Metric("stop_rate", "higher", True, "stopped on its own", "share of answers that ended with <|im_end|>"),
    Metric("repetition_rate", "lower", True, "repetition (repeated n-grams)", "share of answers repeating a 4-gram"),
    Metric("mean_new_tokens", "neither", False, "answer length (tokens)", "mean new tokens per answer", "length"),
    # The knowledge diagnostics (jobs/eval/diagnose.py).
    Metric("right_rate", "higher", True, "answered right", "share of answerable questions answered right",
           "diagnostic"),
    Metric("abstention_rate", "higher", True, "abstains when the documents lack the answer",
           "share of `expect: abstain` items answered with 'not in the documents'", "diagnostic"),
    Metric("false_abstention_rate", "lower", True, "abstains although the documents hold the answer",
           "share of answerable questions answered with 'not in the documents'", "diagnostic"),
    Metric("unsupported_rate", "lower", True, "unsupported claims (share of answer sentences)",
           "answer sentences the question's source paragraphs do not support", "diagnostic"),
    Metric("train_verbatim_right", "higher", True, "training questions as trained: right",
           "right answers to sampled training questions asked verbatim", "diagnostic"),
    Metric("train_reworded_right", "higher", True, "training questions reworded: right",
           "right answers to sampled training questions reworded", "diagnostic"),
    Metric("learned_rate", "higher", True, "learned (of what the base got wrong)",
           "right now, of the questions the base got wrong", "diagnostic"),
    Metric("forgotten_rate", "lower", True, "forgotten (of what the base got right)",
           "wrong now, of the questions the base got right", "diagnostic"),
    # With a retrieval index (jobs/eval/arms.py): what the retrieval arms cite and how well the index finds sources.
    Metric("citation_precision", "higher", True, "citations that hold the source",
           "cited passages that hold one of the question's source paragraphs", "retrieval"),
    Metric("retrieval_recall_at_1", "higher", True, "source ranked first", "questions whose source paragraph the "
           "index ranks first", "retrieval"),
    Metric("retrieval_recall_at_5", "higher", True, "source in the top 5", "questions whose source paragraph is in "
           "the index's top 5", "retrieval"),
    Metric("retrieval_mrr", "higher", True, "mean reciprocal rank", "mean of 1 / the source paragraph's rank",
           "retrieval"),
)
BY_NAME = {m.name: m for m in METRICS}
LABELS = {m.name: m.label for m in METRICS}
HIGHER_IS_BETTER = tuple(m.name for m in METRICS if m.better == "higher" and m.gateable)
LOWER_IS_BETTER = tuple(m.name for m in METRICS if m.better == "lower" and m.gateable)
GATED = HIGHER_IS_BETTER + LOWER_IS_BETTER
# The headline metrics, most telling first: the report's summary table, the manifest's `metrics` keys (with
# base_ and delta_ twins), `make list` (the first four) and the workflow's Prometheus gauges (the first two).
HEADLINE = tuple(m.name for m in METRICS if m.kind in ("score", "length"))
# The diagnostics: those WITH_BASE also get base_ and delta_ twins (the base answers the same questions);
# learned and forgotten compare the two, so they have none.
DIAGNOSTICS = tuple(m.name for m in METRICS if m.kind == "diagnostic")
WITH_BASE = tuple(n for n in DIAGNOSTICS if n not in ("learned_rate", "forgotten_rate"))
# Scores each answer gets on its own (averaged with bootstrap intervals per topic).
PER_QUESTION = ("concept_recall", "similarity", "rougeL", "bleu")

# Eval's arms: what answers (the base, or base + adapter) and whether retrieved passages are in its prompt
# (jobs/eval/arms.py). A metric of an arm is <prefix><metric> in the headline, the gate and `make compare` (the
# adapter's prefix is "", as before retrieval), e.g. rag_concept_recall gates adapter + retrieval.
ARMS = ("base", "base+retrieval", "adapter", "adapter+retrieval")
ARM_PREFIX = {"adapter": "", "base": "base_", "adapter+retrieval": "rag_", "base+retrieval": "base_rag_"}
RETRIEVAL_ARMS = ("base+retrieval", "adapter+retrieval")
DELTA = "delta_"  # adapter minus base
QUESTION_STATUS = ("reviewed", "draft")  # a suite question's review status

GATE_FAILED = 3  # eval's exit status when the report is written but the gate did not pass (build: failed-gate)


def key(name: str, arm: str = "adapter") -> str:
    """The flat headline key of metric `name` for an arm (ARMS) or 'delta' (adapter minus base)."""
    return (DELTA if arm == "delta" else ARM_PREFIX[arm]) + name


def arm_metric(name: str) -> tuple[str, str]:
    """(arm, metric) of a headline name: rag_concept_recall -> (adapter+retrieval, concept_recall)."""
    for arm, prefix in sorted(ARM_PREFIX.items(), key=lambda kv: -len(kv[1])):
        if prefix and name.startswith(prefix) and name[len(prefix):] in GATED:
            return arm, name[len(prefix):]
    return "adapter", name
