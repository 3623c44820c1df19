"""The rules of a build spec that types alone do not express, section by section, and the files it names (the
eval suite, the overrides file) parsed and validated, so no stage meets a mistake after hours of work.
"""

from __future__ import annotations

from pathlib import Path

from jobs.core.spec.audiences import AUDIENCES
from jobs.core.spec.bounds import check_bounds
from jobs.core.spec.metrics import ARM_PREFIX, GATED, LOWER_IS_BETTER, RETRIEVAL_ARMS, arm_metric
from jobs.core.spec.overrides import OverridesError, read_overrides
from jobs.core.spec.schema import (EMBEDDERS, TEMPLATES, BaseModelSpec, BuildSpec, CurateSpec, EvalSpec, RetrievalSpec,
                                   SynthesizeSpec, TrainSpec)
from jobs.core.spec.suite import SuiteError, load_suite
from jobs.core.spec.tags import is_tag
from jobs.core.spec.yamlfile import brief


def _check_base_model(b: BaseModelSpec, errors: list[str]) -> None:
    if b.tiny is None:
        return
    t = b.tiny
    if t.embedding_rows and t.embedding_rows < t.vocab_size:
        errors.append(f"base_model.tiny.embedding_rows: {t.embedding_rows} is fewer than vocab_size "
                      f"{t.vocab_size}; give at least that many rows, or 0 for the tokenizer's own size")
    if t.num_heads >= 1 and t.num_kv_heads >= 1 and (t.hidden_size % t.num_heads or t.num_heads % t.num_kv_heads):
        errors.append(f"base_model.tiny: hidden_size {t.hidden_size} must divide by num_heads {t.num_heads}, "
                      f"and num_heads by num_kv_heads {t.num_kv_heads}")


def _check_curate(c: CurateSpec, errors: list[str]) -> None:
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


def _check_eval(e: EvalSpec, errors: list[str], needs_suite: bool = True) -> None:
    for kind, table in (("min", e.gate.min), ("max_regression", e.gate.max_regression)):
        for name, value in table.items():
            where, (_, metric) = f"eval.gate.{kind}.{name}", arm_metric(name)
            if metric not in GATED:
                errors.append(f"{where}: unknown metric (the gate can check: {', '.join(GATED)}, each also "
                              f"with an arm's prefix: {', '.join(p for p in ARM_PREFIX.values() if p)})")
            elif kind == "min" and metric in LOWER_IS_BETTER:
                errors.append(f"{where}: {metric} is lower-is-better; gate it with max_regression")
    if needs_suite and e.suite is None and not any(x.startswith("eval.suite") for x in errors):  # absent, not refused as a path
        errors.append("eval.suite: missing; a build is measured on questions about its own documents, so name "
                      "its suite: `make new VERSION=<tag> SOURCES=<folder>` drafts data/eval/<tag>.yaml "
                      "(data/eval/core.yaml is about this project's quantum-kernel documents only)")
    if e.suite is not None and Path(e.suite).is_file():
        try:
            load_suite(e.suite)
        except SuiteError as exc:
            errors.append(f"eval.suite: {exc}")


def _check_synthesize(y: SynthesizeSpec, errors: list[str]) -> None:
    w = y.writer
    if w.kind == "engine":
        errors += [f"synthesize.writer.{k}: only for kind openai (the engine writes with base_model)"
                   for k in ("model", "revision", "base_url") if getattr(w, k) is not None]
    unknown = [a for a in y.audiences if a not in AUDIENCES]
    if unknown or not y.audiences:
        errors.append(f"synthesize.audiences: give one or more of {', '.join(AUDIENCES)}"
                      + (f" (unknown: {', '.join(map(repr, unknown))})" if unknown else ""))
    for name in ("question_chars", "answer_chars", "paraphrase_ratio"):
        pair = getattr(y, name)
        if len(pair) != 2 or not 0 <= pair[0] <= pair[1]:
            errors.append(f"synthesize.{name}: give [low, high] with 0 <= low <= high, got {list(pair)}")


def _check_retrieval(r: RetrievalSpec, errors: list[str]) -> None:
    unknown = [e for e in r.embedders if e not in EMBEDDERS]
    if unknown or not r.embedders or len(set(r.embedders)) != len(r.embedders):
        errors.append(f"retrieval.embedders: give one or more of {', '.join(EMBEDDERS)}, each once"
                      + (f" (unknown: {', '.join(map(repr, unknown))})" if unknown else ""))


def _check_across(spec: BuildSpec, errors: list[str]) -> None:
    """Rules that tie two sections: RAFT and the retrieval arms need an index."""
    if spec.retrieval is None and spec.synthesize is not None and spec.synthesize.raft is not None:
        errors.append("synthesize.raft: RAFT's distractors come from the build's retriever; add a `retrieval:` "
                      "section (retrieval: {embedders: [minilm]})")
    if spec.retrieval is None:
        errors += [f"eval.gate.{kind}.{name}: gates the {arm_metric(name)[0]} arm, which needs a `retrieval:` "
                   f"section in the spec" for kind, table in (("min", spec.eval.gate.min),
                                                             ("max_regression", spec.eval.gate.max_regression))
                   for name in table if arm_metric(name)[0] in RETRIEVAL_ARMS]


def check_values(spec: BuildSpec, errors: list[str], needs_suite: bool = True) -> None:
    """Every number against its range (bounds.py), then every section's rules; the parser has already replaced
    values of the wrong type by their defaults."""
    check_bounds(spec, errors)
    if spec.previous is not None and (not is_tag(spec.previous) or spec.previous == spec.name):
        errors.append(f"previous: {brief(spec.previous)} must be the tag of another build (letters, digits, '.', "
                      f"'_' or '-'), not this one")
    checks = ((spec.base_model, _check_base_model), (spec.curate, _check_curate), (spec.train, _check_train),
              (spec.eval, lambda e, errs: _check_eval(e, errs, needs_suite)), (spec.synthesize, _check_synthesize),
              (spec.retrieval, _check_retrieval))
    for section, check in checks:
        if section is not None:  # synthesize is optional
            check(section, errors)
    _check_across(spec, errors)
