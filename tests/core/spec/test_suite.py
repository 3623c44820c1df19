"""Eval suites load from YAML; every mistake is reported at once with the file and the question id."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from jobs.core.spec.suite import Concept, SuiteError, load_suite

from tests.eval.conftest import REPO, SUITE


def _problems(tmp_path, data) -> tuple[Path, str]:
    """Write `data` as a suite file and return (its path, the SuiteError's message)."""
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    return path, str(err.value)


def test_valid_suite_loads(tmp_path):
    suite_file = tmp_path / "mini.yaml"
    suite_file.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    suite = load_suite(suite_file)
    assert suite.name == "mini" and len(suite.questions) == 4 and suite.topics == ["noise", "quantum-kernels"]
    q = suite.questions[0]
    assert q.concepts == (Concept("feature map", ("encoding circuit", "embedding")), Concept("fidelity"))
    assert q.source == "data/raw/thesis/kernels.tex"
    assert len(suite.sha256) == 64


def test_every_mistake_is_listed_with_file_and_question_id(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(SUITE))
    data["questions"][0]["concepts"] = []                      # no concepts
    data["questions"][1]["id"] = "qk-01"                       # duplicate id
    data["questions"][2]["answer"] = "x"                       # unknown key
    del data["questions"][2]["reference"]                      # missing key
    data["questions"].append({"id": "x-1", "question": "Q?", "reference": "R.", "topic": "t",
                              "concepts": [{"name": "a", "synonyms": "b"}]})  # synonyms not a list
    data["extra"] = 1
    path, text = _problems(tmp_path, data)
    assert text.startswith(f"{path}: 6 problem(s)")
    assert "question 'qk-01'.concepts: expected a non-empty list" in text
    assert "question 'qk-01': id used 2 times" in text
    assert "question 'nz-01': unknown key 'answer'" in text
    assert "question 'nz-01': missing key(s) reference" in text
    assert "question 'x-1'.concepts[0].synonyms: expected a list of strings" in text
    assert "extra: unknown top-level key" in text


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SuiteError, match="eval suite not found"):
        load_suite(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("questions: [unclosed")
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(bad)


@pytest.mark.parametrize("path", sorted((REPO / "data" / "eval").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_suites_load(path: Path):
    from jobs.curate.documents import load_documents

    suite = load_suite(path)
    assert suite.questions
    docs, _, _ = load_documents([REPO / "data" / "raw"], "fail")
    paragraph_ids = {p.id for d in docs for p in d.paragraphs}
    for q in suite.questions:
        if q.source:  # a source names a document of the repository, so the report can point at it
            assert (REPO / q.source).exists(), f"{path}: question {q.id}: source {q.source} does not exist"
        for pid in q.paragraphs:  # a source reference names a paragraph curate finds in data/raw
            assert pid in paragraph_ids, f"{path}: question {q.id}: no paragraph {pid} in data/raw"
    assert any(q.expect == "abstain" for q in suite.questions), "a shipped suite measures abstention too"


def test_abstain_items_and_source_paragraphs(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(SUITE))
    suite_file = tmp_path / "mini.yaml"
    suite_file.write_text(yaml.safe_dump(data))
    suite = load_suite(suite_file)
    absent = next(q for q in suite.questions if q.id == "nz-02")
    assert absent.expect == "abstain" and absent.concepts == () and absent.paragraphs == ()
    assert suite.questions[0].expect == "answer"
    assert suite.questions[0].paragraphs == ("thesis/kernels.tex#kernels/definition#p0",)


def test_bad_expect_and_paragraph_references_are_listed(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(SUITE))
    data["questions"][0]["paragraphs"] = ["kernels.tex p0", "thesis/kernels.tex#kernels#p1"]  # one malformed id
    data["questions"][1]["expect"] = "refuse"
    del data["questions"][2]["concepts"]  # concepts stay required for answerable items
    data["questions"][3]["paragraphs"] = ["notes/noise.md#noise#p0"]  # an abstain item has no sources
    path, text = _problems(tmp_path, data)
    assert text.startswith(f"{path}: 4 problem(s)")
    for expected in ("question 'qk-01'.paragraphs: 'kernels.tex p0' is not a paragraph id",
                     "question 'qk-02'.expect: 'refuse' is not one of answer, abstain",
                     "question 'nz-01': missing key(s) concepts",
                     "question 'nz-02'.paragraphs: an `expect: abstain` item has no source paragraphs"):
        assert expected in text


def _question(i: int, **fields) -> dict:
    return {"id": f"q{i}", "question": "What is a kernel?", "reference": "An inner product.", "concepts": ["kernel"],
            "topic": "k"} | fields


def test_a_suite_larger_than_eval_can_ask_is_refused_with_its_size(tmp_path):
    from jobs.core.spec.suite import MAX_QUESTIONS

    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump({"name": "huge", "questions": [_question(i) for i in range(MAX_QUESTIONS + 1)]}))
    msg = str(pytest.raises(SuiteError, load_suite, path).value)
    assert f"questions: {MAX_QUESTIONS + 1:,} questions, more than the {MAX_QUESTIONS:,}" in msg
    assert msg.count("\n") == 1  # one problem, not one per question


def test_overlong_fields_are_refused_by_length_without_echoing_them(tmp_path):
    from jobs.core.spec.suite import LIMITS

    long_question = "Why " * 250_000  # a megabyte prompt
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump({"name": "long", "questions": [
        _question(0, question=long_question), _question(1, reference="r" * (LIMITS["reference"] + 1)),
        _question(2, concepts=[{"name": "c", "synonyms": ["s"] * 51}]), _question(3, topic="t" * 500)]}))
    msg = str(pytest.raises(SuiteError, load_suite, path).value)
    assert "question 'q0'.question: 1,000,000 characters, more than the 4,000 a question may have" in msg
    assert "question 'q1'.reference: 8,001 characters" in msg and "question 'q3'.topic: 500 characters" in msg
    assert "question 'q2'.concepts[0].synonyms: 51 strings, more than the 50 allowed" in msg
    assert len(msg) < 1000


def test_a_long_list_of_problems_is_capped(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "questions": [{"id": f"q{i}"} for i in range(500)]}))
    msg = str(pytest.raises(SuiteError, load_suite, path).value)
    assert msg.startswith(f"{path}: 500 problem(s)") and "... and 480 more" in msg and msg.count("\n") == 21


def test_an_id_with_a_trailing_newline_is_refused(tmp_path):
    path = tmp_path / "nl.yaml"
    path.write_text(yaml.safe_dump({"name": "nl", "questions": [_question(0, id="q0\n")]}))
    assert "id must be letters, digits" in str(pytest.raises(SuiteError, load_suite, path).value)


def test_a_suite_holds_no_numbers_nan_and_huge_ones_are_refused_as_such(tmp_path):
    path = tmp_path / "nums.yaml"
    path.write_text("name: .nan\nquestions:\n  - {id: 1000000000000000000000000000000, question: .inf, "
                    "reference: -.inf, concepts: [.nan, {name: 1e308, synonyms: [12]}], topic: 7, "
                    "paragraphs: [3]}\n")
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    message = str(err.value)
    for where in ("name: expected a non-empty string, got float nan", "question: expected a non-empty string",
                  "reference: expected a non-empty string", "concepts[0]: expected a string or",
                  "synonyms[0]: expected a non-empty string", "topic: expected a non-empty string",
                  "3 is not a paragraph id"):
        assert where in message, where
    assert "problem(s)" in message and len(message) < 3000
