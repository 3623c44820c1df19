"""python -m jobs.retrieve on an index folder: JSON lines per question with ranked passages, then the summary;
bad input is one line naming the file."""

from __future__ import annotations

import json

from jobs.core.retrieval.hybrid import write_index
from jobs.retrieve.__main__ import main
from tests.core.retrieval.test_hybrid import ROWS, bag_embed


def test_questions_as_json_lines_with_recall_per_topic(tmp_path, capsys, monkeypatch):
    write_index(ROWS, tmp_path / "index", {"minilm": bag_embed})
    monkeypatch.setattr("jobs.core.retrieval.hybrid.load_query_embedder", lambda name: bag_embed)
    questions = tmp_path / "q.yaml"
    questions.write_text("questions:\n"
                         "  - {id: a, question: why are kernel values indistinguishable, topic: k,"
                         " paragraphs: ['doc.md#kernels#p1']}\n"
                         "  - {id: b, question: what is the weather, topic: out, expect: abstain}\n")
    assert main(["--index", str(tmp_path / "index"), "--questions", str(questions), "--k", "2", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r.get("id") for r in lines[:2]] == ["a", "b"] and lines[0]["rank"] == 1
    assert set(lines[0]["hits"][0]) == {"rank", "id", "paragraph_ids", "file", "section", "page", "score", "text"}
    assert len(lines[1]["hits"]) == 2 and lines[1]["rank"] is None
    assert lines[2]["summary"]["overall"]["recall@1"] == 1.0 and list(lines[2]["summary"]["topics"]) == ["k"]
    assert main(["--index", str(tmp_path / "index"), "--query", "depolarizing noise", "--k", "1"]) == 0
    assert "doc.md > Noise" in capsys.readouterr().out
    assert main(["--index", str(tmp_path), "--query", "x"]) == 2
    assert capsys.readouterr().err.startswith("retrieve: error: ")
