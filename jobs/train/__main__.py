"""python -m jobs.train --spec SPEC --dataset DATASET_DIR --out ADAPTER_DIR [--checkpoints DIR]

QLoRA (or LoRA) training from the build spec's `train` section: reads DATASET_DIR/train.parquet, writes the
adapter folder described in docs/architecture.md. Rerun the same command after a crash or kill: it resumes
from ADAPTER_DIR/checkpoints (or --checkpoints). Sets ARGO_PROGRESS_FILE's `N/M` when that variable is set.
"""

from __future__ import annotations

import argparse
import sys

from jobs.core.errors import QslmError
from jobs.core.spec.load import load_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.train", description=__doc__.split("\n\n")[1])
    parser.add_argument("--spec", required=True, help="build spec: data/builds/<tag>.yaml or a resolved spec JSON")
    parser.add_argument("--dataset", required=True, help="dataset folder written by the curate stage")
    parser.add_argument("--out", required=True, help="adapter folder to write (resumes from its checkpoints/)")
    parser.add_argument("--checkpoints", help="resume state folder (default: ADAPTER_DIR/checkpoints); the cluster "
                                              "keeps it on a volume apart from the adapter it uploads")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        from jobs.core.engine.loading import budget_fix, gpu_memory_errors
        from jobs.train.run import train  # torch is imported only once the spec is known to be good

        with gpu_memory_errors(budget_fix(spec, args.spec)):
            info = train(spec, args.dataset, args.out, args.checkpoints)
    except QslmError as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 2
    print(f"train: wrote {args.out} ({info['steps']} steps, final loss {info['final_loss']:.4f}, "
          f"{info['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
