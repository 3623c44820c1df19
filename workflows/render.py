"""python -m workflows.render [--check]

Writes the pipeline's WorkflowTemplate as YAML (what the cluster runs and the chart installs) and a sample
Workflow of one build, so every change to the pipeline shows up as a diff in review:

    workflows/rendered/pipeline.yaml            the build WorkflowTemplate (workflows/pipeline.py)
    workflows/rendered/push.yaml                the WorkflowTemplate a git push runs (workflows/push.py)
    workflows/rendered/sample-run.yaml          a Workflow referencing the build (v1 at a fixed example commit)
    charts/quantum-slm/files/                   both templates again, inside the chart (Helm reads only its folder)

With --check nothing is written; the exit status is 1 when a committed file differs from the code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.core.repo import REPO_ROOT
from workflows.pipeline import pipeline_template, run_workflow
from workflows.push import push_template

HEADER = "# Generated from workflows/pipeline.py by `make render` (python -m workflows.render). Do not edit.\n"
PIPELINE_FILES = (REPO_ROOT / "workflows" / "rendered" / "pipeline.yaml",
                  REPO_ROOT / "charts" / "quantum-slm" / "files" / "pipeline.yaml")
PUSH_FILES = (REPO_ROOT / "workflows" / "rendered" / "push.yaml", REPO_ROOT / "charts" / "quantum-slm" / "files" / "push.yaml")
SAMPLE_FILE = REPO_ROOT / "workflows" / "rendered" / "sample-run.yaml"
SAMPLE_COMMIT = "0123456789abcdef0123456789abcdef01234567"  # fixed, so the sample does not churn


def sample_run():
    return run_workflow("v1", "v1", "v1", SAMPLE_COMMIT, name="qslm-v1-20260101-000000",
                        data_hash="89abcdef0123456789abcdef0123456789abcdef")


def rendered() -> dict[Path, str]:
    """{file: text} for every generated file."""
    pipeline, push = HEADER + pipeline_template().to_yaml(), HEADER + push_template().to_yaml()
    out = {path: pipeline for path in PIPELINE_FILES} | {path: push for path in PUSH_FILES}
    out[SAMPLE_FILE] = HEADER + sample_run().to_yaml()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered().items():
        current = path.read_text() if path.is_file() else None
        if current == text:
            continue
        stale.append(path.relative_to(REPO_ROOT))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print(f"out of date (run `make render`): {', '.join(map(str, stale))}", file=sys.stderr)
        return 1
    print(f"{'wrote' if stale else 'up to date:'} {', '.join(map(str, stale)) or len(rendered())} file(s)"
          if not args.check else "rendered files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
