"""Reading the YAML files a person writes (build specs, eval suites, overrides): one place, one set of errors."""

from __future__ import annotations

from pathlib import Path

import yaml

from jobs.core.errors import QslmError


def read_yaml(path: str | Path, error: type[QslmError], what: str):
    """(parsed data, raw bytes) of a YAML file; a missing, unreadable or malformed file raises `error`
    naming the file and what it should be (`what`: "build spec", "eval suite", ...)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read this {what} ({exc.strerror})") from None
    try:
        return yaml.safe_load(raw.decode("utf-8")), raw
    except UnicodeDecodeError as exc:
        raise error(f"{path}: this {what} is not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise error(f"{path}: this {what} is not valid YAML{where}: {problem}") from None
