"""python -m jobs.core.spec SPEC|TAG [...]: load and validate build specs completely; exit 2 listing every problem.

What `make build`, `make submit` and the workflow's first step run before any work.
"""

import argparse
import sys

from jobs.core.spec.load import load_spec, spec_by_tag
from jobs.core.spec.schema import SpecError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.core.spec", description="Validate build specs completely, "
                                "before any stage runs (what `make build`, `make submit` and the workflow do first).")
    p.add_argument("specs", nargs="+", help="spec files (data/builds/<tag>.yaml) or tags")
    args = p.parse_args(argv)
    failed = False
    for item in args.specs:
        try:
            spec = load_spec(item) if item.endswith((".yaml", ".yml", ".json")) else spec_by_tag(item)
            print(f"{spec.source_file}: ok (tag {spec.name})")
        except SpecError as exc:
            print(f"spec: error: {exc}", file=sys.stderr)
            failed = True
    return 2 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
