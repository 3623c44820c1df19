"""python -m bench.curate [--corpus DIR] [--repeats N] [--examples N]

Curate throughput, printed as a table: (1) the shared real corpus end to end (documents/s, MB/s, and the
parse step alone), (2) the time to produce N (default 10,000) examples from a generated Markdown corpus
of unique keyword-bearing paragraphs. Uses the smoke spec (tiny model's tokenizer). Not a test: numbers vary
by machine; record them in docs/benchmarks.md with the machine and date.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

from jobs.core.engine.basemodel import resolve_base_model
from jobs.core.spec.load import spec_by_tag
from jobs.curate.documents import load_documents
from jobs.curate.run import curate

WORDS = ("state circuit qubit measurement gate amplitude phase basis operator matrix vector sample shot device "
         "training model classifier margin dataset optimizer gradient parameter layer entanglement rotation "
         "observable expectation estimate variance bias error channel threshold overlap similarity projection "
         "spectrum frequency coefficient ansatz depth width register readout calibration").split()


def synthetic_corpus(folder: Path, paragraphs: int, keywords: tuple[str, ...], seed: int = 0) -> int:
    """Markdown files of unique paragraphs (random words around two keywords); returns bytes written."""
    rng = random.Random(seed)
    total, per_file, per_section = 0, 200, 4
    for f in range(0, paragraphs, per_file):
        lines = [f"# Chapter {f // per_file}\n"]
        for i in range(f, min(f + per_file, paragraphs)):
            if i % per_section == 0:
                lines.append(f"## Section {i // per_section}\n")
            a, b = rng.sample(keywords, 2)
            words = " ".join(rng.choice(WORDS) for _ in range(60))
            lines.append(f"A {a} is a {rng.choice(WORDS)} {rng.choice(WORDS)} used with {b}: {words} "
                         f"({i}). With $x_{{{i}}}$ the {a} is\n\n$$\nk_{{{i}}}(x) = \\langle x | {i} \\rangle\n$$\n")
        text = "\n".join(lines)
        (folder / f"part{f // per_file:04d}.md").write_text(text)
        total += len(text.encode())
    return total


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall seconds, median CPU seconds of this process (less sensitive to a busy machine), result."""
    wall, cpu, result = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--corpus", type=Path, default=Path("/work/shared/corpus"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--examples", type=int, default=10_000)
    args = parser.parse_args(argv)
    spec = spec_by_tag("smoke")
    resolve_base_model(spec)  # make the tiny model once, outside the timings
    rows, runs = [], iter(range(10_000))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.corpus.is_dir():
            parse_s, parse_cpu, _ = timed(lambda: load_documents([args.corpus], "skip"), args.repeats)
            total_s, total_cpu, st = timed(lambda: curate(spec, tmp / f"c{next(runs)}", [args.corpus], quiet=True),
                                           args.repeats)
            mb = st["documents"]["bytes"] / 1e6
            n_docs = st["documents"]["count"]
            n_ex = st["examples"]["train"] + st["examples"]["eval"]
            rows.append(("shared corpus: parse only", n_docs, mb, parse_s, parse_cpu, "-"))
            rows.append(("shared corpus: curate end to end", n_docs, mb, total_s, total_cpu, n_ex))
        src = tmp / "synthetic"
        src.mkdir()
        nbytes = synthetic_corpus(src, int(args.examples / 2.6) + 200, spec.curate.keywords)
        big = dataclasses.replace(spec, curate=dataclasses.replace(spec.curate, max_examples=args.examples))
        synth_s, synth_cpu, st = timed(lambda: curate(big, tmp / f"s{next(runs)}", [src], quiet=True), 1)
        n_ex = st["examples"]["train"] + st["examples"]["eval"] + st["examples"]["leakage_removed"]
        rows.append((f"synthetic: {args.examples:,} examples", st["documents"]["count"], nbytes / 1e6, synth_s,
                     synth_cpu, n_ex))
    print(f"machine: {platform.node()} {platform.machine()}, python {platform.python_version()}, "
          f"{len(os.sched_getaffinity(0))} cores, load {os.getloadavg()[0]:.1f}; median of {args.repeats} runs for the corpus rows")
    print(f"{'run':36} {'docs':>5} {'MB':>7} {'wall s':>7} {'cpu s':>6} {'docs/s':>7} {'MB/s':>6} {'examples':>9}")
    for name, docs, mb, s, cpu, ex in rows:
        print(f"{name:36} {docs:5d} {mb:7.2f} {s:7.2f} {cpu:6.2f} {docs / s:7.1f} {mb / s:6.2f} {ex!s:>9}")
    print(json.dumps({r[0]: round(r[3], 3) for r in rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
