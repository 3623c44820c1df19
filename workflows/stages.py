"""python -m workflows.stages --spec SPEC --out DIR

The build's first work after checkout: loads and validates the whole spec at the build's commit (every problem
listed, as `python -m jobs.core.spec` does), then writes what the DAG branches on:
    DIR/synthesize   "true" when the spec has a `synthesize` section (the synthesize task runs), else "false"
    DIR/curated      where curate leaves its dataset under runs/<run>/: "curate/dataset" when synthesis follows
                     (synthesize then writes "dataset"), else "dataset" itself
    DIR/retrieval    "true" when the spec has a `retrieval` section (the index task runs; eval and publish read
                     runs/<run>/index/), else "false"
so train, eval and publish always read runs/<run>/dataset/, whichever stage wrote it, with no conditional artifact.
Standard library and jobs.core only: runs in the curate image.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.core.errors import QslmError
from jobs.core.store import keys
from jobs.core.spec.load import load_spec

# The build's stages in order, each with the command it runs (python -m MODULE): the local build (workflows/build.py)
# runs them in this order, and the Argo pipeline's DAG (workflows/pipeline.py) runs the same commands in the same
# order (tests/workflows/test_pipeline.py checks it). synthesize runs only when the spec has a `synthesize:` section,
# index only when it has a `retrieval:` section.
STAGES = {"curate": "jobs.curate", "synthesize": "jobs.synthesize", "index": "jobs.index", "train": "jobs.train",
          "eval": "jobs.eval", "publish": "jobs.core.store.publish"}
DATASET = keys.RUN_KEYS["dataset"]  # runs/<run>/dataset/: the dataset train, eval and publish read
INDEX = keys.RUN_KEYS["index"]  # runs/<run>/index/: the retrieval index (specs with `retrieval:`), for eval and publish
CURATED_FOR_SYNTHESIS = keys.RUN_KEYS["curated"]  # runs/<run>/curate/dataset/: curate's output when synthesize follows


def flags(spec) -> dict[str, str]:
    synthesize = spec.synthesize is not None
    return {"synthesize": "true" if synthesize else "false",
            "curated": CURATED_FOR_SYNTHESIS if synthesize else DATASET,
            "retrieval": "true" if spec.retrieval is not None else "false"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workflows.stages", description=__doc__.split("\n\n")[1])
    p.add_argument("--spec", required=True, type=Path, help="the build spec at the build's commit")
    p.add_argument("--out", required=True, type=Path, help="folder for the flag files")
    args = p.parse_args(argv)
    try:
        spec = load_spec(args.spec)
    except QslmError as exc:
        print(f"spec: error: {exc}", file=sys.stderr)
        return 2
    values = flags(spec)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        (args.out / name).write_text(value)
    print(f"{spec.source_file}: ok (tag {spec.name}); synthesize: {values['synthesize']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
