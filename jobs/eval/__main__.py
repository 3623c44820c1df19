"""python -m jobs.eval --spec SPEC --dataset DATASET_DIR --adapter ADAPTER_DIR --out REPORT_DIR [--previous PREV_REPORT_DIR]
                      [--index INDEX_DIR]

Answers the spec's eval suite with the base model + adapter and with the base alone, scores held-out
perplexity, applies the spec's gate and writes the report folder (metrics.json, report.html, answers.jsonl,
gate.json, eval-info.json). Exit status: 0 gate passed, 3 gate failed (report still written), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.core.errors import QslmError
from jobs.core.spec.metrics import GATE_FAILED
from jobs.core.spec.load import load_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.eval", description=__doc__.split("\n\n")[1])
    parser.add_argument("--spec", required=True, type=Path, help="build spec YAML (or resolved spec JSON)")
    parser.add_argument("--dataset", required=True, type=Path, help="curate output folder")
    parser.add_argument("--adapter", required=True, type=Path, help="train output folder")
    parser.add_argument("--out", required=True, type=Path, help="report folder to create (must be new or empty)")
    parser.add_argument("--previous", type=Path, help="previous build's report folder, for regression checks")
    parser.add_argument("--index", type=Path, help="the build's retrieval index (python -m jobs.index): with a "
                                                   "`retrieval:` spec, adds the base+retrieval and adapter+retrieval "
                                                   "arms (ignored without one)")
    args = parser.parse_args(argv)

    try:
        spec = load_spec(args.spec)
        from jobs.core.engine.loading import budget_fix, gpu_memory_errors
        from jobs.eval.run import run_eval  # the heavy imports (pandas, then torch) wait for a good spec

        if args.index and spec.retrieval is None and (args.index / "index.json").is_file():
            print("eval: --index ignored: the spec has no `retrieval:` section (its two plain arms only)",
                  file=sys.stderr)
        with gpu_memory_errors(budget_fix(spec, args.spec)):
            gate = run_eval(spec, args.dataset, args.adapter, args.out, args.previous,
                            index_dir=args.index if spec.retrieval else None)  # the spec decides: no section, no arms
    except QslmError as exc:
        print(f"eval: error: {exc}", file=sys.stderr)
        return 2
    from jobs.eval.gate import gate_summary

    print(gate_summary(gate))
    print(f"report: {args.out / 'report.html'}")
    return 0 if gate["passed"] else GATE_FAILED


if __name__ == "__main__":
    sys.exit(main())
