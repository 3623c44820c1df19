"""The range of every number in a build spec: each one finite and bounded below and above.

    from jobs.core.spec.bounds import check_bounds
    check_bounds(spec, errors)     # appends "train.learning_rate: must be in (0, 1], got nan"

One table, SPEC_BOUNDS, keyed by the field's dotted path (a tuple's items share their field's range, `*` stands
for any key of a mapping). A comparison with NaN is always false, so every check is written as `low <= v <= high`
negated: NaN and the infinities fail it. tests/core/spec/test_bounds.py checks that every numeric field of the
spec dataclasses has a range here, so a field added without one fails a test instead of passing unbounded.
A number where the spec wants something else is left to the type check.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit; torch takes more, but one range for every seed


class Range(NamedTuple):
    low: float
    high: float
    open_low: bool = False  # True: `low` itself is refused
    open_high: bool = False

    def holds(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def __str__(self) -> str:
        return f"{'(' if self.open_low else '['}{_show(self.low)}, {_show(self.high)}{')' if self.open_high else ']'}"


def _show(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"an integer of {len(str(abs(value))) if value.bit_length() < 14000 else 'thousands of'} digits"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)


TOKENS = Range(1, 131_072)  # the longest context any Qwen2.5 model has, in tokens
STEPS = Range(1, 10_000_000)  # optimizer steps
FRACTION = Range(0.0, 1.0, open_high=True)
COSINE = Range(-1.0, 1.0)
SEED = Range(0, SEED_MAX)

SPEC_BOUNDS: dict[str, Range] = {
    "base_model.tiny.hidden_size": Range(1, 16_384),
    "base_model.tiny.num_layers": Range(1, 128),
    "base_model.tiny.num_heads": Range(1, 256),
    "base_model.tiny.num_kv_heads": Range(1, 256),
    "base_model.tiny.intermediate_size": Range(1, 65_536),
    "base_model.tiny.vocab_size": Range(1, 262_144),
    "base_model.tiny.max_position_embeddings": TOKENS,
    "base_model.tiny.seed": SEED,
    "base_model.tiny.embedding_rows": Range(0, 1_048_576),
    "curate.context_paragraphs": Range(0, 50),
    "curate.min_paragraph_chars": Range(0, 100_000),
    "curate.eval_fraction": FRACTION,
    "curate.semantic_threshold": COSINE,
    "curate.max_examples": Range(1, 1_000_000),
    "curate.near_duplicate_threshold": FRACTION,
    "curate.seed": SEED,
    "train.lora.r": Range(1, 1024),
    "train.lora.alpha": Range(1, 4096),
    "train.lora.dropout": FRACTION,
    "train.execution.micro_batch_size": Range(1, 1024),
    "train.execution.loss_chunk_tokens": Range(0, 1_048_576),
    "train.execution.preflight_steps": Range(0, 100),
    "train.execution.cpu_threads": Range(1, 1024),
    "train.batch_size": Range(1, 4096),
    "train.grad_accum": Range(1, 4096),
    "train.learning_rate": Range(0.0, 1.0, open_low=True),
    "train.epochs": Range(1, 1000),
    "train.max_steps": STEPS,
    "train.warmup_steps": Range(0, 10_000_000),
    "train.weight_decay": Range(0.0, 10.0),
    "train.max_grad_norm": Range(0.0, 1e6),
    "train.max_length": TOKENS,
    "train.seed": SEED,
    "train.checkpoint_every": STEPS,
    "train.logging_every": STEPS,
    "train.memory_budget_gib": Range(0.0, 1024.0, open_low=True),
    "eval.gate.min.*": Range(0.0, 1e6),
    "eval.gate.max_regression.*": Range(0.0, 1e6),
    "eval.max_new_tokens": Range(1, 32_768),
    "eval.batch_size": Range(1, 1024),
    "eval.bootstrap_samples": Range(1, 1_000_000),
    "eval.seed": SEED,
    "eval.train_questions": Range(0, 10_000),
    "eval.cpu_threads": Range(1, 1024),
    "synthesize.writer.timeout_s": Range(0.0, 3600.0, open_low=True),
    "synthesize.writer.retries": Range(0, 20),
    "synthesize.writer.backoff_s": Range(0.0, 600.0),
    "synthesize.writer.concurrency": Range(1, 256),
    "synthesize.writer.batch_size": Range(1, 1024),
    "synthesize.questions_per_fact": Range(1, 50),
    "synthesize.paraphrases": Range(0, 50),
    "synthesize.temperature": Range(0.0, 2.0),
    "synthesize.top_p": Range(0.0, 1.0, open_low=True),
    "synthesize.max_new_tokens": Range(1, 32_768),
    "synthesize.seed": SEED,
    "synthesize.min_similarity": COSINE,
    "synthesize.question_chars": Range(0, 100_000),
    "synthesize.answer_chars": Range(0, 100_000),
    "synthesize.paraphrase_ratio": Range(0.0, 100.0),
    "synthesize.max_paragraphs": Range(1, 10_000_000),
    "synthesize.raft.distractors": Range(1, 50),
    "synthesize.raft.without_oracle": FRACTION,
    "synthesize.raft.per_paragraph": Range(1, 50),
    "synthesize.raft.seed": SEED,
    "retrieval.k": Range(1, 64),
}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(value, where: str):
    """(dotted path for the table, path to show, number) of every number inside a loaded spec section."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _numbers(getattr(value, f.name), f"{where}.{f.name}" if where else f.name)
    elif isinstance(value, dict):
        for key, item in value.items():
            for _, shown, number in _numbers(item, f"{where}.*"):
                yield f"{where}.*", shown.replace(f"{where}.*", f"{where}.{str(key)[:40]}", 1), number
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if _is_number(item):
                yield where, f"{where}[{i}]", item
    elif _is_number(value):
        yield where, where, value


def check_bounds(spec, errors: list[str]) -> None:
    """Append one problem for every number of `spec` outside its range (NaN and infinities included)."""
    for path, shown, value in _numbers(spec, ""):
        bound = SPEC_BOUNDS.get(path)  # None: a number where the spec wants text (its type error is reported)
        if bound is not None and not bound.holds(value):
            errors.append(f"{shown}: must be in {bound}, got {_show(value)}")
