"""The model card (README.md) of an exported build, generated from its manifest and report: nothing typed by hand.

Sections: base model, data provenance (documents and their sha256), training settings, eval scores with their
bootstrap intervals, the gate, the merges with their held-out perplexity against the adapter on its 4-bit base,
and how to run each artifact (transformers, vLLM with the adapter itself, llama.cpp / Ollama).
"""

from __future__ import annotations

import json
from pathlib import Path

from jobs.core.spec.metrics import HEADLINE
from jobs.serve.builds import Build

MERGE_TEXT = {
    "dequantized": "the NF4 base the adapter was trained on, dequantized, plus the adapter (the weights it saw)",
    "original": "the base checkpoint as published, plus the adapter (no 4-bit rounding in the base)",
}


def _interval(stat: dict) -> str:
    return f"{stat['mean']:.4f} [{stat['low']:.4f}, {stat['high']:.4f}]"


def _scores(report: dict) -> list[str]:
    overall = report.get("overall", {})
    rows = ["| metric | adapter | base | adapter - base |", "|---|---|---|---|"]
    for metric in HEADLINE:
        if metric in overall.get("adapter", {}):
            rows.append(f"| {metric} | {_interval(overall['adapter'][metric])} | {_interval(overall['base'][metric])} "
                        f"| {_interval(overall['delta'][metric])} |")
    ppl = report.get("perplexity")
    if ppl:
        rows.append(f"| perplexity (held-out, {ppl['paragraphs']} paragraphs, {ppl['tokens']} tokens) | "
                    f"{_interval(ppl['adapter'])} | {_interval(ppl['base'])} | |")
    return rows


def _gate(manifest: dict) -> list[str]:
    gate = manifest.get("gate", {})
    lines = [f"**{manifest['status']}**" + ("" if gate.get("passed") else ": this build failed its eval gate and "
                                             "cannot be promoted; use it for inspection only.")]
    lines += [f"- [{'pass' if c['passed'] else 'FAIL'}] {c['message']}" for c in gate.get("checks", [])]
    return lines or ["(no checks)"]


def _merges(ppl: dict[str, float], merges: tuple[str, ...]) -> list[str]:
    ref = ppl["adapter"]
    rows = ["| folder | what it is | held-out perplexity | vs adapter on its 4-bit base |", "|---|---|---|---|",
            f"| `adapter/` (with the 4-bit base) | what eval scored | {ref:.4f} | reference |"]
    for kind in merges:
        rows.append(f"| `merged-{kind}/` | {MERGE_TEXT[kind]} | {ppl[kind]:.4f} | {ppl[kind] - ref:+.4f} "
                    f"({(ppl[kind] / ref - 1) * 100:+.3f} %) |")
    best = min(merges, key=lambda k: abs(ppl[k] - ref))
    rows += ["", f"Closest to the model that was evaluated: `merged-{best}/`."]
    return rows


def _usage(build: Build, merges: tuple[str, ...], gguf: Path | None) -> list[str]:
    spec = build.spec
    folder = f"merged-{merges[0]}"
    lines = ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
             f'model = AutoModelForCausalLM.from_pretrained("{folder}")   # no peft needed',
             f'tokenizer = AutoTokenizer.from_pretrained("{folder}")', "```", "",
             "The adapter itself, served with vLLM's LoRA support (one base, adapters picked per request by "
             "`model`):", "```bash",
             f"vllm serve {spec.base_model.id} " + ("--quantization bitsandbytes " if spec.train.quantization == "nf4"
                                                     else "") + f"--dtype {spec.train.compute_dtype} \\",
             f"    --enable-lora --max-lora-rank {spec.train.lora.r} --lora-modules {build.tag}=./adapter", "```",
             "`--quantization bitsandbytes` loads the base in 4 bits, as the adapter was trained (without it the "
             "adapter runs on the 16-bit base, like `merged-original/`). The same API is served without a GPU by "
             f"`make serve VERSION={build.tag}`."]
    if gguf:
        lines += ["", "llama.cpp, and Ollama with the `Modelfile` beside the GGUF (the build's chat template, stop "
                  "tokens, system prompt and its eval's greedy decoding):", "```bash", f"llama-cli -m {gguf.name} -cnv",
                  f"ollama create {build.tag} -f Modelfile && ollama run {build.tag}", "```"]
    return lines


def model_card(build: Build, report: dict, stats: dict, ppl: dict[str, float], merges: tuple[str, ...],
               gguf: Path | None = None) -> str:
    m, spec, t = build.manifest, build.spec, build.spec.train
    docs = ["| document | sha256 | bytes |", "|---|---|---|"] + [
        f"| {s['path']} | `{s['sha256'][:16]}` | {s['bytes']} |" for s in m.get("sources", [])]
    examples = stats.get("examples", {})
    training = {"quantization": t.quantization, "compute_dtype": t.compute_dtype, "lora": vars(t.lora),
                "batch_size": t.batch_size, "grad_accum": t.grad_accum, "learning_rate": t.learning_rate,
                "epochs": t.epochs, "max_steps": t.max_steps, "lr_scheduler": t.lr_scheduler,
                "max_length": t.max_length, "seed": t.seed}
    front = ["---", f"base_model: {spec.base_model.id}", "library_name: transformers",
             "tags: [quantum-slm, qlora, lora]", "---"]
    dirty = " (uncommitted changes)" if m["git"].get("dirty") else ""
    revision = f" at revision `{spec.base_model.revision}`" if spec.base_model.revision else ""
    body = [
        f"# quantum-slm build `{build.tag}`", "", spec.description or "", "",
        f"Made {m['created_at']} from commit `{m['git'].get('commit')}`{dirty}; the sha256 of every file it is made "
        f"of is in its manifest, `builds/{build.tag}/manifest.json` in the store.", "",
        "## Base model", f"`{spec.base_model.id}`{revision}, trained on as {t.quantization} with {t.compute_dtype} "
        "compute.", "",
        "## Data provenance", f"Dataset sha256 `{m.get('dataset_sha256')}`; {examples.get('train', '?')} training and "
        f"{examples.get('eval', '?')} eval examples.", "", *docs, "",
        "## Training", "```json", json.dumps(training, indent=2), "```",
        f"Training took {m.get('timings_s', {}).get('train')} s.", "",
        f"## Evaluation (suite `{report.get('suite', {}).get('name')}`, {report.get('suite', {}).get('questions')} "
        "questions; mean [95 % bootstrap interval])", *_scores(report), "",
        "## Gate", *_gate(m), "",
        "## Merged models", *_merges(ppl, merges), "",
        "## How to use", *_usage(build, merges, gguf), "",
    ]
    return "\n".join(front + body)
