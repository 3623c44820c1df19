"""Review before trust: accept, edit, drop; every decision validated and saved at once."""

import pytest
import yaml

from jobs.core.spec import suite_review as review
from jobs.core.spec.suite import SuiteError, load_suite

SUITE = {"name": "mine", "questions": [
    {"id": "a-01", "question": "What is a swarm cell?", "reference": "Queen cell bottom edge frames.",
     "concepts": ["queen"], "topic": "queens", "paragraphs": ["d.md#q#p0"], "status": "draft"},
    {"id": "a-02", "question": "What kills phoretic mites?", "reference": "Oxalic acid broodless period.",
     "concepts": ["oxalic acid"], "topic": "varroa", "paragraphs": ["d.md#v#p0"], "status": "draft"},
    {"id": "abstain-01", "question": "Who funded it?", "reference": "Not in the documents.", "expect": "abstain",
     "topic": "out-of-scope", "status": "draft"},
    {"id": "hand-01", "question": "What is varroa?", "reference": "A mite.", "concepts": ["mite"], "topic": "varroa"},
]}


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    return path


def test_accept_edit_drop(suite):
    assert [q["id"] for q in review.pending(suite)] == ["a-01", "a-02", "abstain-01"]
    assert review.decide(suite, "a-01", "accept") == {"questions": 4, "draft": 2, "reviewed": 2}
    review.decide(suite, "a-02", "edit", {"reference": "Oxalic acid in midwinter, when there is no brood.",
                                          "concepts": [{"name": "oxalic acid", "synonyms": ["oxalate"]}]})
    assert review.decide(suite, "abstain-01", "drop") == {"questions": 3, "draft": 0, "reviewed": 3}
    s = load_suite(suite)
    assert [(q.id, q.status) for q in s.questions] == [("a-01", "reviewed"), ("a-02", "reviewed"),
                                                        ("hand-01", "reviewed")]
    assert s.questions[1].reference.startswith("Oxalic acid in midwinter") and s.questions[1].concepts[0].synonyms
    assert suite.read_text().startswith("# mine: 3 of 3 questions reviewed, 0 draft")


def test_a_bad_edit_is_refused_and_the_file_is_unchanged(suite):
    before = suite.read_text()
    with pytest.raises(SuiteError, match="expected a non-empty string"):
        review.decide(suite, "a-01", "edit", {"question": ""})
    with pytest.raises(SuiteError, match="cannot edit paragraphs"):
        review.decide(suite, "a-01", "edit", {"paragraphs": ["x#y#p0"]})
    with pytest.raises(SuiteError, match="no question 'zz'"):
        review.decide(suite, "zz", "accept")
    assert suite.read_text() == before and not list(suite.parent.glob(".mine.yaml.*"))
