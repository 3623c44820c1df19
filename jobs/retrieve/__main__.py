"""python -m jobs.retrieve (--tag T | --index DIR | --dataset DIR | --spec S [--sources DIR ...])
                          (--query Q | --questions FILE.yaml) [--k 5] [--method hybrid|bm25|dense|bm25+minilm] [--json]

Rank a build's passages for a question, or for every question of a question set (an eval suite works too). The
index is the build's own (--tag: from the store, re-hashed against its manifest), a folder (--index), built from a
dataset folder's catalogue (--dataset), or from documents (--spec with --sources: curate then index, into
$QSLM_CACHE/retrieve/). --json prints one JSON object per question: {id, question, topic, paragraphs, rank, hits:
[{rank, id, paragraph_ids, file, section, page, score, text}]}, then, when questions carry paragraph ids, one
{"summary": {overall, topics}} object with recall@1, recall@5 and MRR. Exit status: 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.retrieve", description=__doc__.split("\n\n")[1])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tag", help="a committed build in the store (QSLM_STORE)")
    where.add_argument("--index", type=Path, help="an index folder (python -m jobs.index)")
    where.add_argument("--dataset", type=Path, help="a dataset folder with catalogue.parquet (indexed here)")
    where.add_argument("--spec", help="a build spec: curate --sources (default: its own) and index them here")
    parser.add_argument("--sources", nargs="+", type=Path, metavar="DIR", help="with --spec: the documents")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--query", help="one question")
    what.add_argument("--questions", type=Path, help="a question set YAML (questions: id, question, topic, "
                                                      "paragraphs)")
    parser.add_argument("--k", type=int, default=5, help="passages per question (1-100, default 5)")
    parser.add_argument("--method", default="hybrid", help="hybrid (BM25 and every embedder, fused; default), bm25, "
                                                            "dense, or rankers joined by + (bm25+minilm)")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of text")
    args = parser.parse_args(argv)
    if not 1 <= args.k <= 100:
        parser.error("--k must be between 1 and 100")
    if args.sources and not args.spec:
        parser.error("--sources needs --spec")

    from jobs.core.errors import QslmError
    from jobs.retrieve.run import open_index, run

    try:
        index = open_index(tag=args.tag, index=args.index, dataset=args.dataset, spec=args.spec,
                           sources=args.sources)
        run(index, args.query, args.questions, args.k, args.method, args.json)
    except QslmError as exc:
        print(f"retrieve: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
