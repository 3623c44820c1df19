"""python -m bench.retrieve --index INDEX_DIR --questions FILE.yaml [FILE.yaml ...] [--repeats 3]

Retrieval quality and speed of one index, as docs/benchmarks.md reports them: recall@1, recall@5 and MRR per
question set and topic for every ranker alone and fused (BM25, each embedder, BM25 + MiniLM, all); the index's
load time; each embedder's load time (apart); and the warm query latency (p50, p95) of the hybrid ranking over
every question, `--repeats` times. A table on stdout; numbers only, no thresholds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from jobs.core.retrieval.hybrid import Index, load_query_embedder
from jobs.core.retrieval.recall import first_rank, load_questions, summarize


def methods(index: Index) -> list[str]:
    dense = sorted(index.dense)
    combos = ["bm25", *dense, *(f"bm25+{d}" for d in dense)]
    return combos + (["hybrid"] if len(dense) > 1 else [])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.retrieve", description=__doc__.split("\n\n")[1])
    p.add_argument("--index", required=True, type=Path)
    p.add_argument("--questions", required=True, nargs="+", type=Path)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    start = time.perf_counter()
    index = Index.load(args.index)
    load_s = time.perf_counter() - start
    for name in sorted(index.dense):
        start = time.perf_counter()
        index.embedders[name] = load_query_embedder(name)
        index.embedders[name](["warm up"])
        print(f"embedder {name}: loaded in {time.perf_counter() - start:.2f} s")
    print(f"index: {len(index.passages)} passages, loaded in {load_s * 1000:.1f} ms (embedders apart)\n")
    print(f"{'questions':<14} {'method':<18} {'topic':<14} {'n':>3} {'R@1':>6} {'R@5':>6} {'MRR':>6}")
    for path in args.questions:
        qs = load_questions(path)
        for method in methods(index):
            ranks = []
            for q in qs:
                order, _ = index.ranking(q.question, method)
                ranks.append((q, first_rank([index.passages[i].ids for i in order], q.paragraphs)
                              if q.paragraphs else None))
            s = summarize(ranks)
            for topic, row in [*s["topics"].items(), ("ALL", s["overall"])]:
                print(f"{path.stem:<14} {method:<18} {topic:<14} {row['questions']:>3} {row['recall@1']:>6.2f} "
                      f"{row['recall@5']:>6.2f} {row['mrr']:>6.2f}")
    questions = [q.question for path in args.questions for q in load_questions(path)]
    for method in methods(index):
        times = []
        for _ in range(args.repeats):
            for q in questions:
                t = time.perf_counter()
                index.search(q, 5, method)
                times.append(time.perf_counter() - t)
        ms = np.array(times) * 1000
        print(f"\nlatency {method}: {len(ms)} warm queries, p50 {np.percentile(ms, 50):.1f} ms, "
              f"p95 {np.percentile(ms, 95):.1f} ms, max {ms.max():.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
