"""The curation overrides file (spec `curate.overrides`): a human pins or drops paragraphs by id.

    pin:  ["data/raw/thesis/main.tex#quantum-kernel-methods#p3"]    # always make examples from these
    drop: ["data/raw/notes/device-noise-log.md#device-noise-characterisation-log#p0"]   # never use these

Its shape is checked when the spec loads; whether the ids exist in the documents is checked by curate, which
parses them. Errors name the file and the key, never echo the file's content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jobs.core.errors import QslmError
from jobs.core.spec.yamlfile import problems, read_yaml

KEYS = ("pin", "drop")


class OverridesError(QslmError):
    """An overrides file that cannot be used; the message lists every problem found."""


@dataclass(frozen=True)
class Overrides:
    pin: frozenset[str] = field(default_factory=frozenset)
    drop: frozenset[str] = field(default_factory=frozenset)


def _ids(value, key: str, errors: list[str]) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        errors.append(f"{key}: expected a list of paragraph ids, got a {type(value).__name__}")
        return frozenset()
    bad = [i for i, v in enumerate(value) if not isinstance(v, str) or not v.strip()]
    if bad:
        errors.append(f"{key}: item(s) {', '.join(map(str, bad[:5]))}{' ...' if len(bad) > 5 else ''} are not "
                      f"paragraph id strings")
    return frozenset(v for v in value if isinstance(v, str) and v.strip())


def read_overrides(path: str | Path | None) -> Overrides:
    """The overrides file's pin and drop sets (empty when no file is set)."""
    if not path:
        return Overrides()
    data, _ = read_yaml(path, OverridesError, "overrides file")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise OverridesError(f"{path}: an overrides file is a mapping with keys pin and/or drop (lists of "
                             f"paragraph ids), got a {type(data).__name__}")
    errors = [f"{k[:40]}: unknown key (known keys: pin, drop)" for k in sorted(map(str, data)) if k not in KEYS]
    ov = Overrides(_ids(data.get("pin"), "pin", errors), _ids(data.get("drop"), "drop", errors))
    both = ov.pin & ov.drop
    if both:
        errors.append(f"{len(both)} id(s) both pinned and dropped: drop item(s) "
                      f"{', '.join(str(i) for i, v in enumerate(data['drop']) if v in both)}")
    if errors:
        raise OverridesError(problems(path, "overrides file", errors))
    return ov
