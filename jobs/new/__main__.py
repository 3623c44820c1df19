"""python -m jobs.new --tag TAG --sources DIR [--writer engine|openai] [--link] [--like v2] [--questions 24] [--qa F]

From a folder of your documents to a build: copies them into data/raw/TAG/ (or, with --link, lets a local-only
build read the folder where it is), writes data/builds/TAG.yaml (sources, keywords proposed from the documents,
the base model and settings of --like, each commented) and a draft eval suite data/eval/TAG.yaml across every
section. Offline extractive drafts unless --writer names one. Exit status: 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.new", description=__doc__.split("\n\n")[1])
    parser.add_argument("--tag", required=True, help="the new build's tag (data/builds/TAG.yaml)")
    parser.add_argument("--sources", required=True, type=Path, help="the folder that holds your documents")
    parser.add_argument("--writer", choices=("engine", "openai"), help="phrase questions with the base model "
                        "(engine) or an OpenAI-compatible endpoint (QSLM_WRITER_BASE_URL, QSLM_WRITER_MODEL)")
    parser.add_argument("--link", action="store_true", help="build from the folder where it is (local builds only)")
    parser.add_argument("--like", default="v2", help="the spec whose base model and settings to take (default v2)")
    parser.add_argument("--questions", type=int, default=24, help="answerable questions to draft (default 24)")
    parser.add_argument("--qa", type=Path, help="a JSONL of your own {question, answer[, source]} pairs: the suite's "
                        "questions instead of drafts")
    args = parser.parse_args(argv)
    if not 1 <= args.questions <= 500:
        parser.error("--questions: give 1 to 500")

    from jobs.core.errors import QslmError
    from jobs.new.run import new

    try:
        new(args.tag, args.sources, args.writer, args.link, args.like, args.questions, qa=args.qa)
    except QslmError as exc:
        print(f"new: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
