"""Export a build as standalone models: Hugging Face folders (adapter merged in), a model card, optionally GGUF.

    python -m jobs.serve.export --tag smoke [--out exports/smoke]           # `make export VERSION=smoke`
    python -m jobs.serve.export --tag v2 --format gguf --quant Q4_K_M       # `make export VERSION=v2 FORMAT=gguf`

Writes OUT/merged-dequantized/ and OUT/merged-original/ (each loadable by AutoModelForCausalLM.from_pretrained
without peft; only `original` for a build not trained on a 4-bit base), OUT/adapter/ (the adapter itself, for
peft or vLLM), OUT/README.md (the model card, also inside each merged folder) and, with --format gguf,
OUT/<tag>-<QUANT>.gguf made from the merge named by --gguf-from, with an Ollama Modelfile beside it (OUT/Modelfile).
The GGUF is loaded and asked a question by llama.cpp (in a child process) before the export reports success.

An export never deletes or replaces what it did not write: OUT (default exports/<tag>) is used when it is missing
or empty; otherwise the export writes a new folder beside (default) or inside (OUT given) it, and says so.
Every argument is checked before anything is loaded (the Makefile checks them before it installs anything).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from jobs.core.errors import QslmError
from jobs.core.engine.loading import gpu_memory_errors
from jobs.core.repo import REPO_ROOT
from jobs.core.store.backends import open_store
from jobs.serve import ServeError
from jobs.serve.builds import Build, open_build, quiet_libraries
from jobs.serve.card import model_card
from jobs.serve.exportargs import DEFAULT_QUANT, FORMATS, GGUF_FROM, QUANTS, claim_folder, problems
from jobs.serve.merge import merge, merges_for, perplexities


def heldout_texts(build: Build) -> list[str]:
    import pyarrow.parquet as pq

    rows = pq.read_table(build.artifact("dataset") / "heldout.parquet", columns=["text"]).column("text").to_pylist()
    return [t for t in rows if t and t.strip()]


def export(build: Build, out: Path, fmt: str = "hf", quant: str = "Q4_K_M", gguf_from: str = "dequantized",
           device: str = "auto") -> dict:
    """Write the export folder; returns {"merged": {kind: folder}, "perplexity": {...}, "gguf": path or None}."""
    kinds = merges_for(build)
    if fmt == "gguf" and gguf_from not in kinds:
        raise ServeError(f"--gguf-from {gguf_from}: build {build.tag} offers only {', '.join(kinds)}")
    merged = {kind: merge(build, kind, out / f"merged-{kind}", device) for kind in kinds}
    shutil.copytree(build.artifact("adapter"), out / "adapter", dirs_exist_ok=True)
    texts = heldout_texts(build)
    if not texts:
        raise ServeError(f"build {build.tag}: its dataset has no held-out paragraphs to compare the merges on")
    ppl = perplexities(build, merged, texts, device)
    gguf = ollama_gguf(build, merged[gguf_from], out, quant) if fmt == "gguf" else None
    report = json.loads((build.artifact("report") / "metrics.json").read_text())
    stats = json.loads((build.artifact("dataset") / "stats.json").read_text())
    card = model_card(build, report, stats, ppl, kinds, gguf)
    for folder in [out, *merged.values()]:
        (folder / "README.md").write_text(card, encoding="utf-8")
    return {"merged": merged, "perplexity": ppl, "gguf": gguf}


def ollama_gguf(build: Build, merged: Path, out: Path, quant: str) -> Path:
    """OUT/<tag>-<quant>.gguf and OUT/Modelfile, after llama.cpp has loaded the GGUF and answered a question
    asked through the Modelfile's template (in a child process: a crash fails the export, naming the signal)."""
    from transformers import AutoTokenizer

    from jobs.serve.gguf import answer, convert
    from jobs.serve.modelfile import matches_chat_template, modelfile, render

    gguf = convert(merged, out / f"{build.tag}-{quant}.gguf", quant)
    system = build.system_prompt()
    chat = ([{"role": "system", "content": system}] if system else []) + \
        [{"role": "user", "content": "What is this work about?"}]
    got = answer(gguf, render(chat), max_tokens=8)
    if got["tokens"] < 1:
        raise ServeError(f"llama.cpp loaded {gguf} but generated nothing; do not use it")
    with_template = matches_chat_template(AutoTokenizer.from_pretrained(merged))
    (out / "Modelfile").write_text(modelfile(build, gguf, with_template), encoding="utf-8")
    return gguf


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Export a build: merged Hugging Face folders + model card [+ GGUF].")
    p.add_argument("--tag", required=True, help="build tag")
    p.add_argument("--out", type=Path, help="export folder (default: exports/<tag>)")
    p.add_argument("--format", default="hf", help=f"{' or '.join(FORMATS)} (gguf: also a llama.cpp file and an "
                                                   "Ollama Modelfile)")
    p.add_argument("--quant", default=DEFAULT_QUANT, type=str.upper, help=f"GGUF type: {', '.join(QUANTS)}")
    p.add_argument("--gguf-from", default="dequantized", help=f"which merge becomes the GGUF: {', '.join(GGUF_FROM)}")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = p.parse_args(argv)
    try:
        if problems(args.format, args.quant, args.gguf_from):
            raise ServeError("; ".join(problems(args.format, args.quant, args.gguf_from)))
        if args.format == "gguf":
            from jobs.serve.gguf import llama_cpp_version

            llama_cpp_version()  # installed, before minutes of merging
        build = open_build(open_store(), args.tag, ("adapter", "dataset", "report"))
        quiet_libraries()
        out, note = claim_folder(args.out, REPO_ROOT / "exports" / args.tag, args.tag)
        if note:
            print(f"export: {note}", flush=True)
        print(f"exporting {build.label()} to {out}", flush=True)
        with gpu_memory_errors("export on the CPU (--device cpu)"):
            result = export(build, out, args.format, args.quant, args.gguf_from, args.device)
    except QslmError as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 2
    ppl = result["perplexity"]
    print(f"held-out perplexity: adapter on its 4-bit base {ppl['adapter']:.4f}; " +
          "; ".join(f"merged-{k} {v:.4f}" for k, v in ppl.items() if k != "adapter"))
    for kind, folder in result["merged"].items():
        print(f"  {folder}   (AutoModelForCausalLM.from_pretrained, no peft)")
    if result["gguf"]:
        print(f"  {result['gguf']}   (llama.cpp loaded it and answered)")
        print(f"  {out / 'Modelfile'}   (Ollama: cd {out} && ollama create {args.tag} -f Modelfile && "
              f"ollama run {args.tag})")
    print(f"  {out / 'README.md'}   (model card)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
