"""Draft suites in the studio (only with --allow-changes): the build specs of a folder (data/builds/ unless --specs
says another), the draft questions of each spec's eval suite with the paragraphs they were drafted from, and one
decision at a time (accept, edit, drop) saved by the code `make review` runs: jobs/core/spec/suite_review.py
validates and replaces the suite file, jobs/new/review.py reads a person's edits and parses the documents."""

from __future__ import annotations

import threading
from pathlib import Path

from jobs.core.errors import QslmError
from jobs.core.spec import suite_review
from jobs.core.spec.load import available_tags, spec_by_tag
from jobs.new import review
from jobs.studio import StudioError

FIELDS = ("question", "reference", "concepts")  # what the edit form sends, as the terminal asks for them
_PARAGRAPHS: dict[tuple, dict[str, str]] = {}  # by the spec's sources: raw documents are immutable inputs
_LOCK = threading.Lock()


def suites(specs: Path) -> list[dict]:
    """One row per spec in `specs`: its suite file and how many questions are draft and reviewed, or why not."""
    rows = []
    for tag in available_tags(specs):
        try:
            spec = spec_by_tag(tag, specs)
            counts = suite_review.counts(suite_review.read(spec.eval.suite))
            rows.append({"tag": tag, "suite": spec.eval.suite, **counts})
        except QslmError as exc:  # a spec or suite that does not load: named, with the loader's message
            rows.append({"tag": tag, "error": str(exc)})
    return rows


def _paragraphs(spec) -> tuple[dict[str, str], str]:
    """({id: text} of the spec's documents, "" or why they could not be parsed here)."""
    key = tuple(spec.curate.sources)
    with _LOCK:  # one parse per set of documents, however many pages ask at once
        if key not in _PARAGRAPHS:
            try:
                _PARAGRAPHS[key] = review.source_paragraphs(spec)
            except QslmError as exc:  # a light install without curate's parsers: the drafts without their sources
                return {}, f"the source paragraphs cannot be shown: {exc}"
        return _PARAGRAPHS[key], ""


def drafts(specs: Path, tag: str) -> dict:
    """What the review page of `tag` shows: the suite, its counts, each draft with its source paragraphs."""
    spec = spec_by_tag(tag, specs)
    data = suite_review.read(spec.eval.suite)
    paragraphs, note = _paragraphs(spec)
    missing = "(paragraph not found in the documents: edit or drop this question)" if paragraphs else ""
    items = [{"q": q, "concepts": review.concepts_text(q),
              "sources": [(pid, paragraphs.get(pid, missing)) for pid in q.get("paragraphs", [])]}
             for q in data["questions"] if q.get("status") == "draft"]
    return {"tag": tag, "suite": spec.eval.suite, "counts": suite_review.counts(data), "items": items, "note": note}


def decide(specs: Path, tag: str, form: dict[str, str]) -> dict:
    """Apply the form's decision ({id, action, question, reference, concepts}) to `tag`'s suite through
    suite_review.decide (validated, then the file replaced atomically); returns the counts after it."""
    spec = spec_by_tag(tag, specs)
    qid, action = form.get("id", ""), form.get("action", "")
    if action not in suite_review.ACTIONS:
        raise StudioError(f"{action[:40]!r} is not a review action: {', '.join(suite_review.ACTIONS)}")
    q = next((q for q in suite_review.pending(spec.eval.suite) if q.get("id") == qid), None)
    if q is None:
        raise StudioError(f"{spec.eval.suite}: no draft question {qid[:80]!r} (decided already? reload the page)")
    edits = review.edits_from(q, {f: form.get(f, "") for f in FIELDS}) if action == "edit" else None
    return suite_review.decide(spec.eval.suite, qid, action, edits)
