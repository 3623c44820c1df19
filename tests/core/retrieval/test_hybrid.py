"""The retrieval index: passages from catalogue rows, byte-identical rebuilds, readable modes, hybrid ranking,
recall per topic and the question-set loader. A hashing bag-of-words embedder stands in for MiniLM."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jobs.core.repo import REPO_ROOT
from jobs.core.retrieval.hybrid import Index, RetrievalError, passages_from_catalogue, write_index
from jobs.core.retrieval.recall import Query, QuestionSetError, first_rank, load_questions, summarize

REPO = REPO_ROOT


def bag_embed(texts):
    """Unit vectors of hashed lower-case words (64 dims): similar wording, similar vector; deterministic."""
    out = np.zeros((len(texts), 64), np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"\w+", t.lower()):
            out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def row(pid, text, section="Kernels", kind="prose", page=0, split="train", source="doc.md"):
    return {"id": pid, "text": text, "kind": kind, "source_path": source, "source_sha256": "0" * 64,
            "section": section, "page": page, "selected": True, "split": split, "language": "en"}


ROWS = [
    row("doc.md#kernels#p0", "A fidelity quantum kernel is the squared overlap of two encoded states."),
    row("doc.md#kernels#p1", "Exponential concentration makes kernel values indistinguishable with many qubits."),
    row("doc.md#noise#p0", "Depolarizing noise shrinks every kernel entry towards a constant.", section="Noise",
        split="eval"),
    row("thesis.pdf#svm#p0", "Una máquina de vectores de soporte separa las clases con un margen máximo.",
        section="SVM", page=7, source="thesis.pdf"),
]


@pytest.fixture()
def index(tmp_path):
    write_index(ROWS, tmp_path / "index", {"minilm": bag_embed})
    return Index.load(tmp_path / "index", embedders={"minilm": bag_embed})


def test_long_paragraphs_split_at_sentences_and_keep_their_paragraph_id():
    text = " ".join(f"Sentence number {i} talks about kernels." for i in range(200))
    passages = passages_from_catalogue([row("doc.md#kernels#p9", text)], max_chars=500)
    assert len(passages) > 1 and all(len(p.text) <= 500 for p in passages)
    assert [p.id for p in passages[:2]] == ["doc.md#kernels#p9", "doc.md#kernels#p9@2"]
    assert {p.ids for p in passages} == {("doc.md#kernels#p9",)}
    assert " ".join(p.text for p in passages) == text


def test_rebuild_is_byte_identical_and_readable_by_another_user(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    info = write_index(ROWS, a, {"minilm": bag_embed})
    # another process, other string hashing (bm25s's own vocabulary order would change with it)
    code = ("from pathlib import Path; from jobs.core.retrieval.hybrid import write_index; "
            "from tests.core.retrieval.test_hybrid import ROWS, bag_embed; "
            f"write_index(ROWS, Path({str(b)!r}), {{'minilm': bag_embed}})")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONHASHSEED": "7", "PYTHONPATH": str(REPO)})
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert "index.json" in {f.name for f in files} and "passages.jsonl" in {f.name for f in files}
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert info["passages"] == 4 and info["embedders"] == ["minilm"]
    for p in [a, *a.rglob("*")]:
        assert p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644)


def test_hybrid_bm25_and_dense_find_the_source_with_its_locator(index):
    hits = index.search("why are kernel values indistinguishable for many qubits", k=2)
    assert hits[0].passage.id == "doc.md#kernels#p1" and hits[0].rank == 1
    assert index.search("depolarizing noise", k=1, method="bm25")[0].passage.section == "Noise"
    pdf = index.search("máquina de vectores de soporte", k=1)[0].passage
    assert pdf.locator() == "thesis.pdf > SVM, p. 7"
    assert index.search("   ", k=3) == []
    with pytest.raises(RetrievalError, match="use one of"):
        index.search("kernel", method="magic")


def test_a_query_of_unknown_words_still_ranks_by_meaning(index):
    hits = index.search("zzzz qqqq", k=4)  # BM25 matches nothing: the dense ranking alone decides
    assert len(hits) == 4


def test_load_refuses_a_folder_that_is_not_an_index(tmp_path):
    with pytest.raises(RetrievalError, match="not a retrieval index"):
        Index.load(tmp_path)
    with pytest.raises(RetrievalError, match="nothing to index"):
        write_index([row("x#y#p0", "   ")], tmp_path / "empty", {"minilm": bag_embed})


def test_recall_and_mrr_per_topic():
    qs = [Query("a", "q", "t1", ("p1",)), Query("b", "q", "t1", ("p2",)), Query("c", "q", "t2", ("p3",)),
          Query("d", "q", "t2", (), "abstain")]
    s = summarize([(qs[0], 1), (qs[1], 3), (qs[2], None), (qs[3], None)])
    assert s["overall"] == {"recall@1": 1 / 3, "recall@5": 2 / 3, "mrr": (1 + 1 / 3) / 3, "questions": 3}
    assert s["topics"]["t1"]["recall@5"] == 1.0 and s["topics"]["t2"]["mrr"] == 0.0
    assert first_rank([("x",), ("p2", "p9")], ("p2",)) == 2


def test_question_sets_report_every_problem_and_accept_eval_suites(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("questions:\n  - {id: a, question: ''}\n  - {id: a, question: ok, paragraphs: 3}\n"
                   "  - {id: c, question: ok, expect: maybe}\n")
    with pytest.raises(QuestionSetError) as err:
        load_questions(bad)
    assert str(bad) in str(err.value) and "4 problem(s)" in str(err.value)
    suite = load_questions(REPO_ROOT / "data/eval/core.yaml")
    assert any(q.paragraphs for q in suite) and any(q.expect == "abstain" for q in suite)
