"""Is this suite about this build's documents? A suite's questions name the paragraphs that hold their answers
(`paragraphs:`, ids as curate writes them); the build's catalogue (catalogue.parquet, every paragraph curate
parsed) says which exist and which were selected for training.

    from jobs.core.spec.suite_check import check_paragraphs
    notes = check_paragraphs(load_suite(path), read_rows(dataset / "catalogue.parquet"))

An id that no document of the build has is an error: the suite is about other documents (or the documents
changed under it), and the numbers it would give mean nothing. An id that exists but was not selected for
training is reported apart, as a note: the build can be measured on it, but it was never taught it.
"""

from __future__ import annotations

from jobs.core.spec.suite import Suite, SuiteError

SHOWN = 8  # ids listed in a message; the rest are counted


def _listing(found: dict[str, list[str]]) -> str:
    items = [f"{pid} (asked by {', '.join(qids[:3])}{' ...' if len(qids) > 3 else ''})"
             for pid, qids in list(found.items())[:SHOWN]]
    more = len(found) - SHOWN
    return "; ".join(items) + (f"; and {more} more" if more > 0 else "")


def split_ids(suite: Suite, catalogue: list[dict]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(ids no document has, ids that exist but were not selected), each {paragraph id: [question ids]}."""
    known = {str(r["id"]): bool(r["selected"]) for r in catalogue}
    missing: dict[str, list[str]] = {}
    unselected: dict[str, list[str]] = {}
    for q in suite.questions:
        for pid in q.paragraphs:
            if pid not in known:
                missing.setdefault(pid, []).append(q.id)
            elif not known[pid]:
                unselected.setdefault(pid, []).append(q.id)
    return missing, unselected


def unselected_note(unselected: dict[str, list[str]]) -> str:
    return (f"{len(unselected)} paragraph(s) the suite asks about exist but were not selected for training, so "
            f"the build is measured on what it was not taught: {_listing(unselected)}. Pin them in "
            f"curate.overrides or add keywords they contain (`python -m jobs.curate --explain` says why each "
            f"was dropped)")


def check_paragraphs(suite: Suite, catalogue: list[dict]) -> list[str]:
    """Raise SuiteError naming every paragraph id of the suite that the build's documents lack (with the ones
    that exist but were not selected, apart); return notes for the ids that exist but were not selected."""
    missing, unselected = split_ids(suite, catalogue)
    if missing:
        documents = sorted({str(r["source_path"]) for r in catalogue})
        raise SuiteError(
            f"{suite.path}: {len(missing)} paragraph id(s) its questions name are not in this build's documents "
            f"({len(documents)} document(s): {', '.join(documents[:4])}{' ...' if len(documents) > 4 else ''}): "
            f"{_listing(missing)}."
            + (f" Apart from those, {len(unselected)} exist but were not selected for training: "
               f"{_listing(unselected)}." if unselected else "")
            + " The suite is about other documents, or the documents changed under it: draft a suite for these "
              "documents with `make new`, or fix the ids (`python -m jobs.curate --explain` lists every id)")
    return [unselected_note(unselected)] if unselected else []
