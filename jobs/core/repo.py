"""The repository root and the folders in it that every part of the project names: one home for each path.

Imports nothing of the project: any module may import it.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"
BUILDS_DIR = DATA_DIR / "builds"  # one build spec per tag: <tag>.yaml
EVAL_DIR = DATA_DIR / "eval"  # eval suites
RAW_DIR = DATA_DIR / "raw"  # the project's own documents (immutable inputs)
