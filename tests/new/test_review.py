"""The terminal review: each draft with its source paragraph; accept, edit, drop, skip, quit (saved at once)."""

import yaml

from jobs.core.spec.suite import load_suite
from jobs.new.review import concepts_text, edits_from, parse_concepts, run
from tests.core.spec.test_suite_review import SUITE


def test_terminal_review_saves_each_decision(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    answers = iter(["x", "e", "What raises swarm cells?", "", "queen|queen cell, swarm", "s", "q"])
    said = []
    counts = run(path, {"d.md#q#p0": "A colony raises new queens in swarm cells along the bottom edge."},
                 ask=lambda _: next(answers), say=said.append)
    text = "\n".join(said)
    assert "A colony raises new queens in swarm cells" in text and "[1/3] a-01" in text and "[2/3] a-02" in text
    assert "[3/3] abstain-01" in text  # skipped the second, quit at the third
    assert counts == {"questions": 4, "draft": 2, "reviewed": 2}
    q = load_suite(path).questions[0]
    assert q.question == "What raises swarm cells?" and q.status == "reviewed"
    assert [(c.name, c.synonyms) for c in q.concepts] == [("queen", ("queen cell",)), ("swarm", ())]


def test_concepts_read_as_typed_and_shown_for_editing_the_same_way():
    typed = " queen|queen cell | swarm cell, swarm,, |"
    parsed = parse_concepts(typed)
    assert parsed == [{"name": "queen", "synonyms": ["queen cell", "swarm cell"]}, "swarm"]
    assert concepts_text({"concepts": parsed}) == "queen|queen cell|swarm cell, swarm"
    assert parse_concepts(concepts_text({"concepts": parsed})) == parsed
    abstain = {"expect": "abstain", "concepts": []}
    assert edits_from(abstain, {"question": " Who? ", "reference": "", "concepts": "x"}) == {"question": "Who?"}
