"""python -m jobs.synthesize --spec SPEC --dataset CURATED_DIR --out DATASET_DIR

Add fact-based synthetic examples to a curated dataset folder: per training paragraph the facts it states,
questions and answers per fact, a cloze per fact and paraphrases, written by the spec's `synthesize.writer`
and filtered. Every reply is cached in the store (QSLM_STORE), so a rerun calls no writer. Exit status: 0 done,
2 bad spec, input or writer (the message names it and the fix).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.synthesize", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, help="build spec YAML (data/builds/<tag>.yaml) or resolved JSON")
    parser.add_argument("--dataset", required=True, type=Path, metavar="CURATED_DIR", help="curate's output folder")
    parser.add_argument("--out", required=True, type=Path, metavar="DATASET_DIR",
                        help="dataset folder to create (must not hold files)")
    args = parser.parse_args(argv)

    from jobs.core.errors import QslmError
    from jobs.core.spec.load import load_spec
    from jobs.synthesize.run import synthesize

    try:
        spec = load_spec(args.spec)
        from jobs.core.engine.loading import budget_fix, gpu_memory_errors

        with gpu_memory_errors(budget_fix(spec, args.spec)):
            synthesize(spec, args.dataset, args.out)
    except QslmError as exc:
        print(f"synthesize: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
