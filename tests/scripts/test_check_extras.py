"""scripts/check_extras.py: a fresh venv per extra, resolved by pip without installing. CI checks the extras this
project added last (tracking: MLflow, which no image may carry) and the torch-free curate image; the script
checks every extra when run by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # pip resolves against the package index: tens of seconds per extra


def test_tracking_pulls_mlflow_and_no_torch_and_curate_neither():
    done = subprocess.run([sys.executable, "scripts/check_extras.py", "curate", "tracking"], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines()[2:]}
    assert "| - | ok |" in rows["curate"]
    assert "| mlflow, mlflow-skinny | ok |" in rows["tracking"]
