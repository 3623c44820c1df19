"""The rules of a build spec that types alone do not express, section by section, and the files it names (the
eval suite, the overrides file) parsed and validated, so no stage meets a mistake after hours of work.
"""

from __future__ import annotations

from pathlib import Path

from jobs.core.spec.audiences import AUDIENCES
from jobs.core.spec.metrics import GATED, LOWER_IS_BETTER
from jobs.core.spec.overrides import OverridesError, read_overrides
from jobs.core.spec.schema import TEMPLATES, BaseModelSpec, BuildSpec, CurateSpec, EvalSpec, SynthesizeSpec, TrainSpec
from jobs.core.spec.suite import SuiteError, load_suite


def _at_least(values: dict[str, object], low: int | float, errors: list[str]) -> None:
    for where, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < low:
            errors.append(f"{where}: must be at least {low}, got {value}")


def _check_base_model(b: BaseModelSpec, errors: list[str]) -> None:
    if b.tiny is None:
        return
    t = b.tiny
    _at_least({f"base_model.tiny.{k}": v for k, v in vars(t).items() if k != "seed"}, 1, errors)
    if t.num_heads >= 1 and t.num_kv_heads >= 1 and (t.hidden_size % t.num_heads or t.num_heads % t.num_kv_heads):
        errors.append(f"base_model.tiny: hidden_size {t.hidden_size} must divide by num_heads {t.num_heads}, "
                      f"and num_heads by num_kv_heads {t.num_kv_heads}")


def _check_curate(c: CurateSpec, errors: list[str]) -> None:
    _at_least({"curate.max_examples": c.max_examples}, 1, errors)
    _at_least({"curate.context_paragraphs": c.context_paragraphs, "curate.min_paragraph_chars": c.min_paragraph_chars},
              0, errors)
    for where, value in {"curate.eval_fraction": c.eval_fraction,
                         "curate.near_duplicate_threshold": c.near_duplicate_threshold}.items():
        if not 0.0 <= value < 1.0:
            errors.append(f"{where}: must be in [0, 1), got {value}")
    if not -1.0 <= c.semantic_threshold <= 1.0:
        errors.append(f"curate.semantic_threshold: a cosine similarity, must be in [-1, 1], got {c.semantic_threshold}")
    if not isinstance(c.semantic_selection, (bool, str)):  # 1 == True would pass the Literal check
        errors.append(f"curate.semantic_selection: must be auto, true or false, got {c.semantic_selection!r}")
    if not c.keywords:
        errors.append("curate.keywords: give at least one keyword")
    unknown = [t for t in c.templates if t not in TEMPLATES]
    if unknown:
        errors.append(f"curate.templates: unknown template(s) {', '.join(map(repr, unknown))} "
                      f"(known: {', '.join(TEMPLATES)})")
    if not c.templates:
        errors.append(f"curate.templates: give at least one of {', '.join(TEMPLATES)}")
    if c.overrides is not None:
        try:
            read_overrides(c.overrides)
        except OverridesError as exc:
            errors.append(f"curate.overrides: {exc}")


def _check_train(t: TrainSpec, errors: list[str]) -> None:
    _at_least({"train.batch_size": t.batch_size, "train.grad_accum": t.grad_accum, "train.epochs": t.epochs,
               "train.max_length": t.max_length, "train.checkpoint_every": t.checkpoint_every,
               "train.logging_every": t.logging_every, "train.lora.r": t.lora.r, "train.lora.alpha": t.lora.alpha,
               "train.max_steps": t.max_steps, "train.execution.micro_batch_size": t.execution.micro_batch_size,
               "train.execution.cpu_threads": t.execution.cpu_threads}, 1, errors)
    _at_least({"train.warmup_steps": t.warmup_steps, "train.weight_decay": t.weight_decay,
               "train.max_grad_norm": t.max_grad_norm, "train.execution.loss_chunk_tokens": t.execution.loss_chunk_tokens,
               "train.execution.preflight_steps": t.execution.preflight_steps}, 0, errors)
    if not 0.0 <= t.lora.dropout < 1.0:
        errors.append(f"train.lora.dropout: must be in [0, 1), got {t.lora.dropout}")
    for where, value in {"train.learning_rate": t.learning_rate, "train.memory_budget_gib": t.memory_budget_gib}.items():
        if value <= 0:
            errors.append(f"{where}: must be positive, got {value}")
    if not t.lora.target_modules:
        errors.append("train.lora.target_modules: give at least one module name")
    if t.execution.dequantize_once is True and t.quantization != "nf4":
        errors.append("train.execution.dequantize_once: applies to an nf4 base only (this one is unquantized); "
                      "remove it")
    if t.execution.compile is True and t.quantization == "nf4" and t.execution.dequantize_once is not True:
        errors.append("train.execution.compile: bitsandbytes' 4-bit layers are not compiled; with an nf4 base set "
                      "dequantize_once: true as well")
    if t.execution.checkpoint_layers == "fit" and t.execution.gradient_checkpointing is False:
        errors.append("train.execution.checkpoint_layers: fit chooses which layers to checkpoint; it needs "
                      "gradient_checkpointing: true")


def _check_eval(e: EvalSpec, errors: list[str]) -> None:
    _at_least({"eval.max_new_tokens": e.max_new_tokens, "eval.batch_size": e.batch_size,
               "eval.bootstrap_samples": e.bootstrap_samples}, 1, errors)
    _at_least({"eval.train_questions": e.train_questions}, 0, errors)
    _at_least({"eval.cpu_threads": e.cpu_threads}, 1, errors)
    for kind, table in (("min", e.gate.min), ("max_regression", e.gate.max_regression)):
        for metric, value in table.items():
            where = f"eval.gate.{kind}.{metric}"
            if metric not in GATED:
                errors.append(f"{where}: unknown metric (the gate can check: {', '.join(GATED)})")
            elif kind == "min" and metric in LOWER_IS_BETTER:
                errors.append(f"{where}: {metric} is lower-is-better; gate it with max_regression")
            elif kind == "max_regression" and value < 0:
                errors.append(f"{where}: the largest allowed drop, must be >= 0, got {value}")
    if Path(e.suite).is_file():
        try:
            load_suite(e.suite)
        except SuiteError as exc:
            errors.append(f"eval.suite: {exc}")


def _check_synthesize(y: SynthesizeSpec, errors: list[str]) -> None:
    w = y.writer
    if w.kind == "engine":
        errors += [f"synthesize.writer.{k}: only for kind openai (the engine writes with base_model)"
                   for k in ("model", "revision", "base_url") if getattr(w, k) is not None]
    _at_least({"synthesize.writer.retries": w.retries, "synthesize.writer.backoff_s": w.backoff_s,
               "synthesize.paraphrases": y.paraphrases, "synthesize.temperature": y.temperature}, 0, errors)
    _at_least({"synthesize.writer.concurrency": w.concurrency, "synthesize.writer.batch_size": w.batch_size,
               "synthesize.questions_per_fact": y.questions_per_fact, "synthesize.max_new_tokens": y.max_new_tokens,
               "synthesize.max_paragraphs": y.max_paragraphs}, 1, errors)
    if w.timeout_s <= 0:
        errors.append(f"synthesize.writer.timeout_s: must be positive, got {w.timeout_s}")
    if not 0.0 < y.top_p <= 1.0:
        errors.append(f"synthesize.top_p: must be in (0, 1], got {y.top_p}")
    if not -1.0 <= y.min_similarity <= 1.0:
        errors.append(f"synthesize.min_similarity: a cosine similarity, must be in [-1, 1], got {y.min_similarity}")
    unknown = [a for a in y.audiences if a not in AUDIENCES]
    if unknown or not y.audiences:
        errors.append(f"synthesize.audiences: give one or more of {', '.join(AUDIENCES)}"
                      + (f" (unknown: {', '.join(map(repr, unknown))})" if unknown else ""))
    for name in ("question_chars", "answer_chars", "paraphrase_ratio"):
        pair = getattr(y, name)
        if len(pair) != 2 or not 0 <= pair[0] <= pair[1]:
            errors.append(f"synthesize.{name}: give [low, high] with 0 <= low <= high, got {list(pair)}")


def check_values(spec: BuildSpec, errors: list[str]) -> None:
    """Every section's rules; the parser has already replaced values of the wrong type by their defaults."""
    checks = ((spec.base_model, _check_base_model), (spec.curate, _check_curate), (spec.train, _check_train),
              (spec.eval, _check_eval), (spec.synthesize, _check_synthesize))
    for section, check in checks:
        if section is not None:  # synthesize is optional
            check(section, errors)
