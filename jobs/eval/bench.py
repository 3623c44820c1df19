"""python -m jobs.eval.bench --tag smoke [--adapter ADAPTER_DIR] [--batch-sizes 1,4,8,16] [--max-new-tokens 32]
                           [--quantization nf4|none] [--device auto|cpu|cuda] [--repeats 3]

Batched vs one-at-a-time greedy generation on the spec's eval suite: prints a table of new tokens per second
for each batch size (batch size 1 is one question at a time) and whether the answers match batch size 1.
Results go into docs/benchmarks.md by hand, with the command, machine and date.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

from jobs.core.engine import Engine
from jobs.core.spec import spec_by_tag
from jobs.core.suite import load_suite
from jobs.eval import generate


def run(tag: str, adapter: Path | None, batch_sizes: list[int], max_new_tokens: int, device: str,
        quantization: str | None, repeats: int) -> list[dict]:
    spec = spec_by_tag(tag)
    if quantization:  # compare the 4-bit path with plain weights without writing another spec
        spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, quantization=quantization))
    questions = [q.question for q in load_suite(spec.eval.suite).questions]
    engine = Engine.load(spec, {"adapter": adapter} if adapter else None, device, fast=False)
    name = "adapter" if adapter else None
    kw = {"system_prompt": None, "adapter": name}
    # Warm-up: the first call pays for lazy initialisation (bitsandbytes weight packing, allocator growth).
    generate.answer(engine, questions[:2], max_new_tokens=4, **kw)
    rows, reference = [], None
    for bs in batch_sizes:
        engine._backend.batch_size = bs  # the exact path's batch size (spec.eval.batch_size)
        # The fastest of `repeats` runs: on a shared machine the slower runs measure the neighbours, not us.
        runs = [generate.answer(engine, questions, max_new_tokens=max_new_tokens, **kw) for _ in range(repeats)]
        answers, timing = min(runs, key=lambda r: r[1]["seconds"])
        reference = reference if reference is not None else answers
        rows.append({"batch_size": bs, "questions": len(questions), **timing,
                     "same_answers": sum(a == b for a, b in zip(answers, reference))})
    return rows


def table(rows: list[dict]) -> str:
    base = rows[0]["tokens_per_s"]
    lines = ["| batch size | questions | new tokens | seconds | tokens/s | speed-up | answers equal to first row |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['batch_size']} | {r['questions']} | {r['new_tokens']} | {r['seconds']:.2f} | "
                     f"{r['tokens_per_s']:.0f} | {r['tokens_per_s'] / base:.2f}x | "
                     f"{r['same_answers']}/{r['questions']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.eval.bench", description=__doc__.split("\n\n")[1])
    p.add_argument("--tag", default="smoke", help="build spec tag (model, quantisation and suite come from it)")
    p.add_argument("--adapter", type=Path, help="adapter folder (default: the base model alone)")
    p.add_argument("--batch-sizes", default="1,4,8,16", help="comma-separated; put 1 first as the baseline")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--quantization", choices=["nf4", "none"], help="override the spec's train.quantization")
    p.add_argument("--repeats", type=int, default=3, help="runs per batch size; the fastest is reported")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    start = time.perf_counter()
    rows = run(args.tag, args.adapter, sizes, args.max_new_tokens, args.device, args.quantization,
               args.repeats)
    quant = args.quantization or "as in the spec"
    print(f"spec {args.tag}, quantization {quant}, max_new_tokens {args.max_new_tokens}, greedy, "
          f"best of {args.repeats}; "
          f"{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; {time.perf_counter() - start:.1f} s in all")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
