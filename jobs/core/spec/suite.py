"""Eval suites: held-out questions with reference answers and expected concepts, as YAML data.

    from jobs.core.spec.suite import load_suite
    suite = load_suite("data/eval/core.yaml")

The shape (data/eval/core.yaml):

    name: core
    description: ...
    questions:
      - id: qk-01
        question: "..."
        reference: "..."
        concepts:
          - {name: feature map, synonyms: [encoding circuit, embedding]}
          - fidelity                      # a plain string is a concept without synonyms
        topic: quantum-kernels
        source: data/raw/thesis/chapters/kernels.tex
        paragraphs:                       # optional: the source paragraphs (ids as curate writes them) that
          - data/raw/thesis/main.tex#quantum-kernel-methods/fidelity-kernels#p0   # hold the answer
      - id: out-01
        question: "What T1 did the Zurich device have?"
        reference: "The documents do not report it."   # what is absent, in words
        expect: abstain                   # the answer is not in the documents: the model should say so
        topic: out-of-scope               # (concepts optional for abstain items)
        status: draft                     # optional: draft (written by `make new`, not yet reviewed) or
                                          # reviewed (the default: a person wrote or accepted it)

Every problem in a suite file is collected and raised together as one SuiteError that names the file and,
where it can, the question id. A suite is bounded (MAX_QUESTIONS, and LIMITS on every text field, in
characters), so a runaway file is refused at load instead of exhausting memory or running for days in eval;
messages show a value only as a short preview.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from jobs.core.errors import QslmError
from jobs.core.spec.yamlfile import brief, problems, read_yaml

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")  # \Z: `$` would accept a trailing newline
# Eval answers every question twice (adapter, base) with up to eval.max_new_tokens each: at ~100 new tokens/s on
# the 12 GB card, 2000 questions x 2 x 256 tokens is about 3 hours, the most a build should spend on eval.
MAX_QUESTIONS = 2000
# Characters per field. A question is a prompt: 4000 characters is ~1000 tokens, far inside the model's context.
LIMITS = {"name": 100, "description": 2000, "id": 64, "question": 4000, "reference": 8000, "topic": 100,
          "source": 500, "concept": 200}
MAX_CONCEPTS = 50  # per question, and synonyms per concept
SUITE_KEYS = {"name", "description", "questions"}
QUESTION_KEYS = {"id", "question", "reference", "concepts", "topic", "source", "expect", "paragraphs", "status"}
REQUIRED_QUESTION_KEYS = ("id", "question", "reference", "topic")  # and concepts, unless expect: abstain
EXPECT = ("answer", "abstain")  # answer: the documents hold the answer; abstain: they do not, say so
# draft: written by `make new` (from the documents' sentences or by a writer) and not yet read by a person;
# reviewed: a person accepted or edited it (`make review`). A hand-written question without `status` is reviewed:
# a person wrote it.
STATUS = ("draft", "reviewed")
# A paragraph id as curate writes it: <document>#<section-slug-path>#p<index>
PARAGRAPH_ID = re.compile(r"^[^#\s]+#[^#\s]*#p\d+\Z")
CONCEPT_KEYS = {"name", "synonyms"}


class SuiteError(QslmError):
    """An eval suite that cannot be used; the message lists every problem found."""


@dataclass(frozen=True)
class Concept:
    name: str
    synonyms: tuple[str, ...] = ()

    @property
    def forms(self) -> tuple[str, ...]:
        """Every accepted wording: the name first, then its synonyms."""
        return (self.name, *self.synonyms)


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    reference: str
    concepts: tuple[Concept, ...]
    topic: str
    source: str = ""  # the document the answer comes from (repository-relative path), for the report
    expect: str = "answer"  # "abstain": the documents do not hold the answer and the model should say so
    paragraphs: tuple[str, ...] = ()  # ids of the source paragraphs that hold the answer (faithfulness checks)
    status: str = "reviewed"  # one of STATUS


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    questions: tuple[Question, ...]
    path: str
    sha256: str

    @property
    def topics(self) -> list[str]:
        return sorted({q.topic for q in self.questions})


def _text(value, where: str, errors: list[str], field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        errors.append(f"{where}: expected a non-empty string, got {type(value).__name__} {brief(value)}")
        return ""
    if len(value) > LIMITS[field]:
        errors.append(f"{where}: {len(value):,} characters, more than the {LIMITS[field]:,} a {field} may have")
        return ""
    return value.strip()


def _list(value, where: str, errors: list[str], what: str) -> list:
    if isinstance(value, str) or not isinstance(value, list):
        errors.append(f"{where}: expected a list of {what}, got {type(value).__name__} {brief(value)}")
        return []
    if len(value) > MAX_CONCEPTS:
        errors.append(f"{where}: {len(value)} {what}, more than the {MAX_CONCEPTS} allowed")
        return []
    return value


def _concept(value, where: str, errors: list[str]) -> Concept | None:
    if isinstance(value, str):
        return Concept(_text(value, where, errors, "concept"))
    if not isinstance(value, dict):
        errors.append(f"{where}: expected a string or {{name: ..., synonyms: [...]}}, got {brief(value)}")
        return None
    for key in sorted(map(str, value.keys() - CONCEPT_KEYS)):
        errors.append(f"{where}.{key[:40]}: unknown key (known keys: name, synonyms)")
    name = _text(value.get("name"), f"{where}.name", errors, "concept")
    synonyms = _list(value.get("synonyms", []), f"{where}.synonyms", errors, "strings")
    return Concept(name, tuple(_text(s, f"{where}.synonyms[{i}]", errors, "concept") for i, s in enumerate(synonyms)))


def _question(value, index: int, errors: list[str]) -> Question | None:
    if not isinstance(value, dict):
        errors.append(f"questions[{index}]: expected a mapping with keys {', '.join(REQUIRED_QUESTION_KEYS)}, "
                      f"got {brief(value)}")
        return None
    qid = value.get("id")
    where = f"question {brief(qid, 40)}" if isinstance(qid, str) and qid else f"questions[{index}]"
    for key in sorted(map(str, value.keys() - QUESTION_KEYS)):
        errors.append(f"{where}: unknown key {brief(key, 40)} (known keys: {', '.join(sorted(QUESTION_KEYS))})")
    expect = value.get("expect", "answer")
    if expect not in EXPECT:
        errors.append(f"{where}.expect: {brief(expect)} is not one of {', '.join(EXPECT)}")
        expect = "answer"
    status = value.get("status", "reviewed")
    if status not in STATUS:
        errors.append(f"{where}.status: {brief(status)} is not one of {', '.join(STATUS)}")
        status = "draft"
    missing = [k for k in REQUIRED_QUESTION_KEYS + (("concepts",) if expect == "answer" else ()) if k not in value]
    if missing:
        errors.append(f"{where}: missing key(s) {', '.join(missing)}")
        return None
    if isinstance(qid, str) and not ID_PATTERN.match(qid):
        errors.append(f"{where}: id must be letters, digits, '.', '_' or '-' (it names rows in reports)")
    concepts = _list(value.get("concepts", []), f"{where}.concepts", errors, "concepts")
    if not concepts and expect == "answer" and isinstance(value.get("concepts"), list):
        errors.append(f"{where}.concepts: expected a non-empty list of concepts, got an empty list")
    parsed = tuple(c for c in (_concept(v, f"{where}.concepts[{i}]", errors) for i, v in enumerate(concepts)) if c)
    source = value.get("source", "")
    if source is None or not isinstance(source, str):
        errors.append(f"{where}.source: expected a path string, got {brief(source)}")
        source = ""
    elif source:
        source = _text(source, f"{where}.source", errors, "source")
    return Question(id=_text(qid, f"{where}.id", errors, "id"),
                    question=_text(value["question"], f"{where}.question", errors, "question"),
                    reference=_text(value["reference"], f"{where}.reference", errors, "reference"), concepts=parsed,
                    topic=_text(value["topic"], f"{where}.topic", errors, "topic"), source=source, expect=expect,
                    paragraphs=_paragraphs(value.get("paragraphs", []), expect, where, errors), status=status)


def _paragraphs(value, expect: str, where: str, errors: list[str]) -> tuple[str, ...]:
    """Source references: paragraph ids as the dataset records them (its `paragraph_ids` column)."""
    value = _list(value, f"{where}.paragraphs", errors, "paragraph ids")
    if value and expect == "abstain":
        errors.append(f"{where}.paragraphs: an `expect: abstain` item has no source paragraphs (the documents "
                      f"do not hold its answer); remove them or drop `expect: abstain`")
    bad = [v for v in value if not isinstance(v, str) or not PARAGRAPH_ID.match(v)]
    for v in bad:
        errors.append(f"{where}.paragraphs: {brief(v)} is not a paragraph id (<document>#<section-slugs>#p<index>, "
                      f"as in the dataset's paragraph_ids column)")
    return tuple(v for v in value if v not in bad)


def parse_suite(data, path: str, sha256: str = "") -> Suite:
    """Validate already-parsed YAML; raises SuiteError listing every problem, naming `path`."""
    errors: list[str] = []
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: an eval suite is a mapping with keys name, description, questions; "
                         f"got {type(data).__name__}")
    for key in sorted(map(str, data.keys() - SUITE_KEYS)):
        errors.append(f"{key[:40]}: unknown top-level key (known keys: {', '.join(sorted(SUITE_KEYS))})")
    name = _text(data.get("name"), "name", errors, "name")
    description = data.get("description") or ""
    if not isinstance(description, str):
        errors.append(f"description: expected a string, got {brief(description)}")
        description = ""
    elif len(description) > LIMITS["description"]:
        errors.append(f"description: {len(description):,} characters, more than the {LIMITS['description']:,} "
                      f"allowed")
    raw = data.get("questions")
    if not isinstance(raw, list) or not raw:
        errors.append(f"questions: expected a non-empty list of questions, got {brief(raw)}")
        raw = []
    elif len(raw) > MAX_QUESTIONS:
        errors.append(f"questions: {len(raw):,} questions, more than the {MAX_QUESTIONS:,} one eval may ask "
                      f"(each is answered twice); split the suite, or keep the questions that matter most")
        raw = []
    questions = [q for i, v in enumerate(raw) if (q := _question(v, i, errors))]
    seen: dict[str, int] = {}
    for q in questions:
        seen[q.id] = seen.get(q.id, 0) + 1
    for qid, count in seen.items():
        if count > 1 and qid:
            errors.append(f"question {brief(qid, 40)}: id used {count} times; ids must be unique")
    if errors:
        raise SuiteError(problems(path, "eval suite", errors))
    return Suite(name=name, description=description, questions=tuple(questions), path=path, sha256=sha256)


def load_suite(path: str | Path) -> Suite:
    """Load and validate an eval suite YAML file (curate reads it for leakage checks, eval to ask it)."""
    data, raw = read_yaml(path, SuiteError, "eval suite")
    return parse_suite(data, str(path), hashlib.sha256(raw).hexdigest())
