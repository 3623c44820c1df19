"""The build spec `make new` writes: the documents' own sources and keywords, the base model, synthesis, training
and eval settings of a model build (v2's by default), every value commented where it is written.
"""

from __future__ import annotations

import yaml

# Why each setting has its value; keys not listed here are copied with the template spec's own value, uncommented.
COMMENTS = {
    "base_model.id": "the model fine-tuned: needs it in the Hugging Face cache (or base_model.path)",
    "base_model.tiny": "a tiny random model made locally: proves the pipeline, its scores mean nothing",
    "curate.context_paragraphs": "neighbouring paragraphs (same section) shown with each one",
    "curate.min_paragraph_chars": "shorter paragraphs are skipped; lower it for notes in short paragraphs",
    "synthesize.writer": "who writes synthetic Q&A: the base model itself (engine), or kind: openai for a teacher",
    "synthesize.questions_per_fact": "K questions per fact a paragraph states (one phrasing is hard to recall)",
    "synthesize.paraphrases": "rewrites of each training paragraph",
    "synthesize.audiences": "the phrasings cycled over a fact's K questions",
    "synthesize.temperature": "sampling of the writer",
    "synthesize.top_p": "sampling of the writer",
    "synthesize.max_new_tokens": "per writer reply",
    "synthesize.max_paragraphs": "only the first N training paragraphs: a quick trial",
    "synthesize.seed": "same seed, same writer: the same examples (replies are cached in the store)",
    "synthesize.min_similarity": "MiniLM cosine of a synthetic answer to its paragraph; below it is dropped",
    "train.quantization": "QLoRA: the base in 4-bit NF4, the LoRA adapter in full precision",
    "train.compute_dtype": "dtype of the matrix products (float16 on an A2000)",
    "train.lora": "adapter rank, scale, dropout and the attention projections it adapts",
    "train.batch_size": "examples per optimizer step, times grad_accum",
    "train.grad_accum": "micro-steps per optimizer step",
    "train.learning_rate": "peak learning rate (cosine schedule)",
    "train.epochs": "passes over the training examples",
    "train.max_steps": "optimizer steps; caps epochs",
    "train.max_length": "tokens per example; longer ones are truncated",
    "train.checkpoint_every": "optimizer steps between checkpoints (a rerun resumes from the last one)",
    "train.execution": "speed and memory only: the same loss and gradients (docs/benchmarks.md)",
    "eval.max_new_tokens": "the longest answer eval lets the model write, per question",
    "eval.batch_size": "questions answered at once",
    "eval.bootstrap_samples": "resamples for the 95% intervals",
    "eval.gate": "what a build must reach (min) and may lose against the previous build (max_regression)",
}
SECTIONS = ("base_model", "curate", "synthesize", "train", "eval")
OWN = {"curate": ("sources", "keywords"), "eval": ("suite",)}  # written from the documents, not the template


def flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip().removesuffix(
        "\n...").strip()


def line(key: str, value, comment: str | None, indent: str = "  ") -> str:
    text = f"{indent}{key}: {flow(value)}"
    return f"{text}  # {comment}" if comment else text


def render(tag: str, like_tag: str, like: dict, sources: list[str], keywords: list[str], source_note: str,
           keyword_note: str, suite_path: str, suite_note: str, description: str) -> str:
    """The spec's YAML text: the template spec `like` (its parsed YAML) with this build's sources, keywords and
    suite; every value on a line of its own with why it has that value."""
    out = [f"# {tag}: a build of your own documents, written by `make new` from {like_tag}'s settings. Edit freely;",
           "# `make build VERSION=" + tag + "` checks it completely before any stage runs.",
           f"description: {flow(description)}"]
    for section in SECTIONS:
        values = dict(like.get(section) or {})
        if section == "synthesize" and not values:
            continue
        if section == "curate":
            values = {"sources": sources, "keywords": keywords, **{k: v for k, v in values.items()
                                                                  if k not in ("sources", "keywords")}}
            values.setdefault("min_paragraph_chars", 120)
        if section == "eval":
            values = {"suite": suite_path, **{k: v for k, v in values.items() if k != "suite"}}
        out.append(f"{section}:")
        for key, value in values.items():
            if section == "curate" and key == "sources":
                out.append(f"  # {source_note}")
            if section == "curate" and key == "keywords":
                out.append(f"  # {keyword_note}")
            if section == "eval" and key == "suite":
                out.append(f"  # {suite_note}")
            comment = COMMENTS.get(f"{section}.{key}")
            if key == "execution" and section == "train" and isinstance(value, dict):
                comment = COMMENTS["train.execution"]
            out.append(line(key, value, comment))
    return "\n".join(out) + "\n"
