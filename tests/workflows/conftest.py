"""Fixtures for the workflow tests: a small git repository holding this checkout's data/ at one commit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def data_repo(tmp_path) -> Path:
    """A git repository whose one commit holds this checkout's data/ (builds, raw documents, eval suites), so
    tests build a known commit whatever the state of the working tree."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "data", repo / "data", ignore=shutil.ignore_patterns(".*"))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "data")
    _git(repo, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-q", "-m", "data")
    return repo
