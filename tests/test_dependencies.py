"""Every import is declared in pyproject.toml and every declared package is imported (or its ignore in
[tool.deptry] says why): deptry over the product, the tools and the tests."""

from __future__ import annotations

import subprocess
import sys

from jobs.core.repo import REPO_ROOT


def test_dependencies_are_declared_and_used():
    done = subprocess.run([sys.executable, "-m", "deptry", "."], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
