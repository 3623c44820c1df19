"""Can these numbers be trusted? Three checks eval makes before and after it measures, each in words for the
terminal and the report (`metrics.json` key `trust`):

  - the suite is about this build's documents: every paragraph id its questions name is in the build's
    catalogue (jobs/core/spec/suite_check.py), else eval refuses before loading a model;
  - the comparison is like for like: the previous build was measured on the same suite (by hash) with the same
    base model (jobs/core/store/lineage.py), else the report says so above every comparison;
  - the questions were read by a person: draft questions (`status: draft`, written by `make new`) are counted
    apart, and the gate is said to count them while any are left (`make review` marks them reviewed).
"""

from __future__ import annotations

from pathlib import Path

from jobs.core.store import lineage
from jobs.core.store.dataset_folder import read_rows
from jobs.core.spec.suite import Suite, SuiteError
from jobs.core.spec.suite_check import check_paragraphs
from jobs.eval import EvalError

SHOWN_METRICS = ("concept_recall", "similarity")  # the per-status means the report shows


def check_suite(suite: Suite, dataset_dir: Path) -> list[str]:
    """Refuse a suite about other documents (EvalError naming the ids); notes for ids not selected."""
    path = Path(dataset_dir) / "catalogue.parquet"
    if not path.is_file():
        return [f"{dataset_dir} has no catalogue.parquet (curated by an older version): the suite's paragraph ids "
                f"were not checked against the build's documents; curate again to check them"]
    try:
        return check_paragraphs(suite, read_rows(path))
    except SuiteError as exc:
        raise EvalError(str(exc)) from None


def comparison(spec, suite: Suite, previous: dict | None) -> list[str]:
    """Why the comparison with the previous build is not like for like (empty when it is, or when none)."""
    if previous is None:
        return []
    mine = {"suite_sha256": suite.sha256, "suite": suite.name, "base_model": spec.base_model.id}
    old = previous.get("suite") or {}
    theirs = {"suite_sha256": old.get("sha256"), "suite": old.get("name"),
              "base_model": previous.get("base_model") or mine["base_model"]}  # older reports did not record it
    return [f"NOT LIKE FOR LIKE: {d}" for d in lineage.differences(mine, theirs, previous.get("tag") or "previous")]


def drafts(suite: Suite, rows: list[dict], tag: str) -> dict:
    """{reviewed, draft, by_status: {status: {questions, metric means}}, note}: draft questions apart."""
    status = {q.id: q.status for q in suite.questions}
    by_status = {}
    for s in ("reviewed", "draft"):
        mine = [r for r in rows if status.get(r["id"]) == s and r["expect"] == "answer"]
        means = {m: (sum(r["adapter"][m] for r in mine) / len(mine) if mine else None) for m in SHOWN_METRICS}
        by_status[s] = {"questions": sum(1 for r in rows if status.get(r["id"]) == s), **means}
    n_draft = by_status["draft"]["questions"]
    note = ""
    if n_draft:
        note = (f"{n_draft} of {len(rows)} questions are drafts nobody has reviewed; the headline and the gate "
                f"count them. Review them: make review VERSION={tag}")
    return {"reviewed": by_status["reviewed"]["questions"], "draft": n_draft, "by_status": by_status, "note": note}


def summary(spec, suite: Suite, rows: list[dict], suite_notes: list[str], previous: dict | None) -> dict:
    """metrics.json's `trust`: the base model (for the next build's comparison), the notes, the draft counts."""
    status = drafts(suite, rows, spec.name)
    notes = comparison(spec, suite, previous) + suite_notes + ([status["note"]] if status["note"] else [])
    return {"base_model": spec.base_model.id, "notes": notes, "status": status}
