"""Question-answer pairs a user already has (JSONL under the sources) train as extra examples; bad lines named."""

from __future__ import annotations

import json

import pytest
import yaml

from jobs.core.spec.qa_pairs import QaError, read_pairs
from jobs.curate.run import curate
from tests.curate.conftest import curate_spec, read_rows

DOC = ("# Kernels\n\nA quantum kernel compares two data points through the overlap of their feature-map states "
       "in Hilbert space, estimated shot by shot.\n")


def test_pairs_train_and_the_leakage_check_applies(smoke_spec, tiny_model, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "k.md").write_text(DOC)
    core = yaml.safe_load(open(smoke_spec.eval.suite))["questions"][0]
    pairs = [{"question": "How many shots did the kernel estimate need?", "answer": "About a thousand per entry."},
             {"question": core["question"], "answer": core["reference"], "source": "copied from the suite"}]
    (docs / "mine.jsonl").write_text("\n".join(json.dumps(p) for p in pairs) + "\n\n")
    (docs / "broken.jsonl").write_text('{"question": "no answer"}\n')
    out = tmp_path / "out"
    st = curate(curate_spec(smoke_spec, min_paragraph_chars=40), out, [docs], quiet=True)
    train = read_rows(out)
    mine = [r for r in train if r["origin"] == "user"]
    assert [(r["template"], r["messages"][-1]["content"]) for r in mine] == [("qa-pair", "About a thousand per entry.")]
    assert mine[0]["paragraph_ids"] == ["docs/mine.jsonl#qa#p1"]
    assert st["examples"]["qa_pairs"] == 2 and st["examples"]["leakage_removed"] >= 1  # the copy of the suite
    assert any(s["path"] == "docs/broken.jsonl" and "line 1" in s["reason"] for s in st["documents"]["skipped"])
    info = json.loads((out / "curate-info.json").read_text())
    assert "docs/mine.jsonl" in {s["path"] for s in info["sources"]}  # published with the documents


@pytest.mark.parametrize("line, why", [("not json", "not JSON"), ('["a"]', "expected"),
                                       ('{"question": "q", "answer": ""}', "expected"),
                                       ('{"question": "q", "answer": "a", "extra": 1}', "expected")])
def test_bad_lines_are_named(tmp_path, line, why):
    path = tmp_path / "p.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n' + line + "\n")
    with pytest.raises(QaError, match=f"line 2.*{why}|line 2: {why}"):
        read_pairs(path)
