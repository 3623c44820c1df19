"""scripts/check_extras.py: a fresh venv per extra, resolved by pip without installing. CI checks the heaviest
optional extra (tracking: MLflow, which no image may carry; about a minute); `python scripts/check_extras.py`
checks every extra by hand (measured: curate 29 packages, tracking 101, gguf 30, workflows 33, all ok)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # pip resolves against the package index: tens of seconds per extra


def test_tracking_pulls_mlflow_and_no_torch():
    done = subprocess.run([sys.executable, "scripts/check_extras.py", "tracking"], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines()[2:]}
    assert "| mlflow, mlflow-skinny | ok |" in rows["tracking"]
