"""Reading a spec's YAML mapping into the dataclasses of schema.py: types, unknown keys, required keys, and the
confinement of every path a spec names (inside the repository or a folder QSLM_DATA_ROOT allows).

A value of the wrong type is reported and left out of the section it belongs to (the field keeps its default),
so the checks in checks.py only ever see values of the declared types.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Literal

from jobs.core.repo import REPO_ROOT
from jobs.core.spec.yamlfile import brief

DATA_ROOT_ENV = "QSLM_DATA_ROOT"  # folders outside the repository that specs may name (os.pathsep-separated)
# The same allowance recorded for this checkout alone (`make new LINK=1` writes it; one folder a line): untracked
# (.gitignore), so it never travels with a git push or `make submit`, whose builds stay confined to the repository.
LOCAL_ROOTS_FILE = REPO_ROOT / ".local-data-roots"
INVALID = object()  # what a value of the wrong type converts to: reported, then left out (the field keeps its default)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value, tp, where: str, errors: list[str], is_path: bool):
    """Check `value` against type `tp`; return the converted value (tuples, dataclasses, absolute paths)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _convert(value, inner[0], where, errors, is_path)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            errors.append(f"{where}: {brief(value)} is not one of {', '.join(map(repr, choices))}")
            return INVALID
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            errors.append(f"{where}: expected a list, got {type(value).__name__} {brief(value)}")
            return INVALID
        item_tp = typing.get_args(tp)[0]
        items = tuple(_convert(v, item_tp, f"{where}[{i}]", errors, is_path) for i, v in enumerate(value))
        return INVALID if any(v is INVALID for v in items) else items
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{where}: expected a mapping, got {type(value).__name__} {brief(value)}")
            return INVALID
        key_tp, val_tp = typing.get_args(tp)
        items = {str(k): _convert(v, val_tp, f"{where}.{str(k)[:40]}", errors, False) for k, v in value.items()}
        return INVALID if any(v is INVALID for v in items.values()) else items
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where, errors)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{where}: expected a number, got {type(value).__name__} {brief(value)}")
            return INVALID
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{where}: expected an integer, got {type(value).__name__} {brief(value)}")
            return INVALID
        return value
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(f"{where}: expected true or false, got {type(value).__name__} {brief(value)}")
            return INVALID
        return value
    if tp is str:
        if not isinstance(value, str):
            errors.append(f"{where}: expected a string, got {type(value).__name__} {brief(value)}")
            return INVALID
        if is_path:
            return _confined_path(value, where, errors)
        return value
    raise TypeError(f"spec field type {_type_name(tp)} at {where} is not supported")  # a bug in this file


def allowed_roots() -> list[Path]:
    """Where the files a spec names may live: the repository, the folders QSLM_DATA_ROOT names, and those this
    checkout's LOCAL_ROOTS_FILE lists."""
    extra = [Path(p).resolve() for p in os.environ.get(DATA_ROOT_ENV, "").split(os.pathsep) if p.strip()]
    if LOCAL_ROOTS_FILE.is_file():
        lines = LOCAL_ROOTS_FILE.read_text(encoding="utf-8").splitlines()
        extra += [Path(line.strip()).resolve() for line in lines if line.strip() and not line.startswith("#")]
    return [REPO_ROOT, *extra]


def _confined_path(value: str, where: str, errors: list[str]) -> str | None:
    """The absolute path (symlinks resolved) of a file a spec names; it must exist inside an allowed root, so a
    spec cannot make a stage read (and publish) the rest of the machine. None when it is outside (reported):
    the checks that read the suite and the overrides file then leave it unread."""
    try:
        resolved = (REPO_ROOT / value).resolve()
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system
        errors.append(f"{where}: {brief(value)} is not a usable path ({getattr(exc, 'strerror', None) or exc})")
        return INVALID
    roots = allowed_roots()
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(map(str, roots[1:]))
        via = f" ({brief(value)} leads there)" if value != str(resolved) else ""
        errors.append(f"{where}: {resolved}{via} is outside the repository {REPO_ROOT}"
                      f"{f' and {DATA_ROOT_ENV} ({allowed})' if allowed else ''}; keep documents, suites and "
                      f"overrides in the repository, or allow their folder with {DATA_ROOT_ENV}=/path/to/folder "
                      f"(or for this checkout alone: a line in {LOCAL_ROOTS_FILE.name})")
        return INVALID
    if not resolved.exists():
        errors.append(f"{where}: file or folder {brief(value)} does not exist (looked for {resolved})")
    return str(resolved)


def build(cls, data, where: str, errors: list[str]):
    if not isinstance(data, dict):
        errors.append(f"{where or 'top level'}: expected a mapping, got {type(data).__name__} {brief(data)}")
        return INVALID
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("name", "source_file")}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            errors.append(f"{prefix}{str(key)[:40]}: unknown key (known keys here: {known})")
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _convert(data[name], hints[name], prefix + name, errors, f.metadata.get("path", False))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"{prefix}{name}: required key is missing")
        elif f.metadata.get("path") and isinstance(f.default, (str, tuple)):
            values[name] = _convert(f.default, hints[name], prefix + name, errors, True)
    values = {k: v for k, v in values.items() if v is not INVALID}
    try:
        return cls(**values)
    except TypeError:  # a required key is missing or invalid; already reported
        return INVALID
