"""python -m jobs.new.review --tag TAG [--suite FILE]      (make review VERSION=TAG)

Go through the draft questions of a build's eval suite in the terminal: each with the paragraph it was drafted
from; accept it, edit it (question, reference, concepts), drop it, skip it or quit. Every decision is saved at
once (jobs/core/spec/suite_review.py), so quitting loses nothing; the build's eval counts reviewed questions apart.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Callable

from jobs.core.spec import suite_review as review

PROMPT = "[a]ccept  [e]dit  [d]rop  [s]kip  [q]uit > "


def show(q: dict, paragraphs: dict[str, str], n: int, total: int) -> str:
    concepts = ", ".join(c if isinstance(c, str) else c["name"] + (f" ({', '.join(c.get('synonyms', []))})"
                                                                   if c.get("synonyms") else "")
                         for c in q.get("concepts", []))
    lines = [f"\n[{n}/{total}] {q['id']}  topic {q['topic']}" + ("  (expect: abstain)" if q.get("expect") == "abstain"
                                                              else ""),
             f"  question:  {q['question']}", f"  reference: {q['reference']}"]
    if concepts:
        lines.append(f"  concepts:  {concepts}")
    for pid in q.get("paragraphs", []):
        text = paragraphs.get(pid, "(paragraph not found in the documents: edit or drop this question)")
        lines.append(f"  from {pid}:")
        lines += ["    " + line for line in textwrap.wrap(" ".join(text.split()), 100)]
    return "\n".join(lines)


def parse_concepts(value: str) -> list:
    """Concepts as a person types them: comma-separated, a|b|c gives b and c as synonyms of a."""
    return [{"name": parts[0], "synonyms": parts[1:]} if len(parts) > 1 else parts[0]
            for parts in ([s.strip() for s in c.split("|") if s.strip()] for c in value.split(",")) if parts]


def concepts_text(q: dict) -> str:
    """A question's concepts in the form parse_concepts reads (what the studio's edit form starts from)."""
    return ", ".join(c if isinstance(c, str) else "|".join([c["name"], *c.get("synonyms", [])])
                     for c in q.get("concepts", []))


def edits_from(q: dict, answers: dict[str, str]) -> dict:
    """The edits a person's answers make ({question, reference, concepts}: text; blank keeps the field); an abstain
    item has no concepts. The terminal (ask_edits) and the studio's form both go through here."""
    edits = {field: answers[field].strip() for field in ("question", "reference") if answers.get(field, "").strip()}
    if q.get("expect") != "abstain" and answers.get("concepts", "").strip():
        edits["concepts"] = parse_concepts(answers["concepts"])
    return edits


def ask_edits(q: dict, ask: Callable[[str], str]) -> dict:
    answers = {field: ask(f"  {field} (Enter keeps it): ") for field in ("question", "reference")}
    if q.get("expect") != "abstain":
        answers["concepts"] = ask("  concepts, comma-separated; a|b|c gives b and c as synonyms of a (Enter keeps "
                                  "them): ")
    return edits_from(q, answers)


def source_paragraphs(spec) -> dict[str, str]:
    """{paragraph id: text} of the spec's documents, parsed by curate itself (a subprocess: seconds)."""
    from jobs.new.run import catalogue

    return {r["id"]: r["text"] for source in spec.curate.sources for r in catalogue(Path(source))}


def run(path: Path, paragraphs: dict[str, str], ask: Callable[[str], str] = input,
        say: Callable[[str], None] = print) -> dict:
    """The loop; returns the counts at the end. `ask` and `say` are the terminal (a test passes its own)."""
    drafts = review.pending(path)
    c = review.counts(review.read(path))
    say(f"{path}: {c['draft']} draft and {c['reviewed']} reviewed questions")
    for n, q in enumerate(drafts, 1):
        say(show(q, paragraphs, n, len(drafts)))
        while True:
            choice = ask(PROMPT).strip().lower()[:1]
            if choice in ("a", "e", "d", "s", "q"):
                break
        if choice == "q":
            break
        if choice == "s":
            continue
        action = {"a": "accept", "e": "edit", "d": "drop"}[choice]
        while True:
            try:
                c = review.decide(path, q["id"], action, ask_edits(q, ask) if action == "edit" else None)
                break
            except review.SuiteError as exc:
                say(f"  not saved: {exc}")
                if action != "edit":
                    raise
    c = review.counts(review.read(path))
    say(f"{path}: {c['reviewed']} reviewed, {c['draft']} still draft")
    return c


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.new.review", description=__doc__.split("\n\n")[1])
    parser.add_argument("--tag", required=True, help="the build whose suite to review (data/builds/TAG.yaml)")
    args = parser.parse_args(argv)

    from jobs.core.errors import QslmError
    from jobs.core.spec.load import spec_by_tag

    try:
        spec = spec_by_tag(args.tag)
        run(Path(spec.eval.suite), source_paragraphs(spec))
    except QslmError as exc:
        print(f"review: error: {exc}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("\nreview: stopped; every decision made so far is saved", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
