"""python -m workflows.verdict --report REPORT_DIR --out DIR

The build's last step, after publish stored it: writes DIR/headline.json (the report's flat headline, about 1 KB:
what the Argo UI shows and the Prometheus gauges read, instead of the whole metrics.json) and DIR/gate.txt
("passed", or "failed: " and the failed checks), prints the gate's checks, and exits 3 when the gate failed. A
DAG's phase is that of its last tasks, so without this step a build stored as failed-gate would end the workflow
"Succeeded" and `make submit WAIT=1` would exit 0. Standard library and jobs.core only: runs in the curate image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jobs.core.errors import QslmError
from jobs.core.spec.metrics import GATE_FAILED


class VerdictError(QslmError):
    pass


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VerdictError(f"{path}: cannot read the eval report's JSON ({exc}); the eval step writes it") from None


def verdict(report: Path, out: Path) -> bool:
    """Write headline.json and gate.txt from a report folder; returns whether the gate passed."""
    headline = _read(report / "metrics.json").get("headline")
    gate = _read(report / "gate.json")
    if not isinstance(headline, dict) or not isinstance(gate.get("passed"), bool):
        raise VerdictError(f"{report}: metrics.json has no headline mapping or gate.json no passed flag")
    failed = [c.get("message", c.get("metric", "?")) for c in gate.get("checks", []) if not c.get("passed")]
    out.mkdir(parents=True, exist_ok=True)
    (out / "headline.json").write_text(json.dumps(headline, sort_keys=True) + "\n")
    (out / "gate.txt").write_text("passed\n" if gate["passed"] else "failed: " + "; ".join(failed) + "\n")
    for check in gate.get("checks", []):
        print(f"  {'ok  ' if check.get('passed') else 'FAIL'} {check.get('message', '')}")
    return gate["passed"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workflows.verdict", description=__doc__.split("\n\n")[1])
    p.add_argument("--report", required=True, type=Path, help="the eval step's report folder")
    p.add_argument("--out", required=True, type=Path, help="folder for headline.json and gate.txt")
    args = p.parse_args(argv)
    try:
        passed = verdict(args.report, args.out)
    except QslmError as exc:
        print(f"verdict: error: {exc}", file=sys.stderr)
        return 2
    print("verdict: gate passed" if passed else "verdict: gate FAILED: the build is stored as failed-gate and "
                                                "cannot be promoted")
    return 0 if passed else GATE_FAILED


if __name__ == "__main__":
    sys.exit(main())
