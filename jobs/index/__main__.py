"""python -m jobs.index --spec SPEC --dataset DATASET_DIR --out INDEX_DIR

Build the retrieval index of a build: every paragraph of the dataset's catalogue.parquet (selected or not, held-out
included) as passages of at most 2,000 characters with their locator, BM25 and the spec's dense embedders
(`retrieval.embedders`). It runs in the eval image, where the embedder (torch) is; the output is byte-identical
for the same catalogue and library versions. Exit status: 0 done, 2 bad spec or input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.index", description=__doc__.split("\n\n")[1])
    parser.add_argument("--spec", required=True, help="build spec YAML (data/builds/<tag>.yaml) or resolved JSON")
    parser.add_argument("--dataset", required=True, type=Path, help="dataset folder holding catalogue.parquet")
    parser.add_argument("--out", required=True, type=Path, metavar="INDEX_DIR", help="index folder to create")
    args = parser.parse_args(argv)

    from jobs.core.errors import QslmError
    from jobs.core.spec.load import load_spec
    from jobs.index.run import build

    try:
        build(load_spec(args.spec), args.dataset, args.out)
    except QslmError as exc:
        print(f"index: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
