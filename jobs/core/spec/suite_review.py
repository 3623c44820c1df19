"""Review before trust: a person accepts, edits or drops each draft question of an eval suite, which then says
`status: reviewed`. The terminal review (`make review`, jobs/new/review.py) and the studio both call `decide`.

    from jobs.core.spec.load.review import decide, pending
    for q in pending("data/eval/mine.yaml"):
        decide("data/eval/mine.yaml", q["id"], "accept")                    # or "drop"
    decide("data/eval/mine.yaml", "kernels-02", "edit", {"reference": "..."})

Every decision is validated by the suite loader before the file is replaced (atomically), so a bad edit is
refused with the loader's message and the file is left as it was. YAML comments are not kept: the file gets a
header that says how many questions are reviewed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from jobs.core.spec.suite import SuiteError, parse_suite
from jobs.core.spec.yamlfile import read_yaml

ACTIONS = ("accept", "edit", "drop")
EDITABLE = ("question", "reference", "concepts", "topic", "expect")


def read(path: str | Path) -> dict:
    data, _ = read_yaml(Path(path), SuiteError, "eval suite")
    parse_suite(data, str(path))  # a suite that does not load is not reviewed
    return data


def pending(path: str | Path) -> list[dict]:
    """The draft questions, in file order."""
    return [q for q in read(path)["questions"] if q.get("status") == "draft"]


def counts(data: dict) -> dict:
    qs = data["questions"]
    draft = sum(1 for q in qs if q.get("status") == "draft")
    return {"questions": len(qs), "draft": draft, "reviewed": len(qs) - draft}


def write(path: str | Path, data: dict) -> None:
    """Validate, then replace the file atomically (a crash leaves the old file or the new one, never half)."""
    path = Path(path)
    parse_suite(data, str(path))
    c = counts(data)
    header = (f"# {data.get('name')}: {c['reviewed']} of {c['questions']} questions reviewed, {c['draft']} draft "
              f"(make review VERSION=<tag> goes through the drafts: accept, edit or drop).\n")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def decide(path: str | Path, question_id: str, action: str, edits: dict | None = None) -> dict:
    """Apply one decision to question `question_id` and save; returns the counts after it. `edits` (for
    "edit") maps EDITABLE fields to new values; concepts as the suite writes them (strings or {name, synonyms})."""
    if action not in ACTIONS:
        raise SuiteError(f"{action!r} is not a review action ({', '.join(ACTIONS)})")
    data = read(path)
    index = next((i for i, q in enumerate(data["questions"]) if q.get("id") == question_id), None)
    if index is None:
        raise SuiteError(f"{path}: no question {question_id!r}")
    if action == "drop":
        del data["questions"][index]
    else:
        q = dict(data["questions"][index])
        unknown = sorted(set(edits or {}) - set(EDITABLE))
        if unknown:
            raise SuiteError(f"{path}: question {question_id}: cannot edit {', '.join(unknown)} (editable: "
                             f"{', '.join(EDITABLE)})")
        q.update(edits or {})
        if q.get("expect") == "abstain":
            q.pop("paragraphs", None)  # an abstain item has no source paragraphs
        q["status"] = "reviewed"
        data["questions"][index] = q
    write(path, data)
    return counts(data)
