"""python -m jobs.curate --spec SPEC [--sources DIR ...] --out DATASET_DIR [--explain]

Curate documents (LaTeX, Markdown/MyST, reStructuredText, PDF) into an instruction dataset folder:
train.parquet, eval.parquet, heldout.parquet, paragraphs.parquet, catalogue.parquet, stats.json,
curate-info.json. Sources default to the spec's `curate.sources`. --explain prints every paragraph with kept/dropped and why (then --out is
optional). Exit status: 0 done, 2 bad spec or input (the message names the file and the fix).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.curate", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, help="build spec YAML (data/builds/<tag>.yaml) or resolved JSON")
    parser.add_argument("--sources", nargs="+", type=Path, metavar="DIR", help="document folders or files (default: the spec's)")
    parser.add_argument("--out", type=Path, metavar="DATASET_DIR", help="dataset folder to create (must not hold files)")
    parser.add_argument("--explain", action="store_true", help="print every paragraph's decision and its reason")
    args = parser.parse_args(argv)
    if args.out is None and not args.explain:
        parser.error("--out is required (unless --explain)")

    from jobs.core.errors import QslmError
    from jobs.core.spec import load_spec
    from jobs.curate.run import curate, explain_only

    try:
        spec = load_spec(args.spec)
        if args.out is None:
            print(explain_only(spec, args.sources))
        else:
            curate(spec, args.out, args.sources, explain=args.explain)
    except QslmError as exc:
        print(f"curate: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
