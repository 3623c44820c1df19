"""Semantic selection with MiniLM (slow: loads the embedder) and the curate stage's torch-free import."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from jobs.core.repo import REPO_ROOT
from jobs.core.spec.suite import parse_suite
from jobs.curate import select
from jobs.curate.documents import load_documents
from tests.curate.conftest import curate_spec

DOC = """# Estimation

The swap test estimates the overlap of two states with one ancilla qubit and a controlled swap between registers.

We cooked pasta for the group dinner on Friday and everybody brought a dessert to share with the others.
"""
SUITE = parse_suite({"name": "s", "questions": [
    {"id": "q1", "topic": "quantum-kernels", "question": "Why is compute-uncompute preferred over the swap test?",
     "reference": "It needs no ancilla.", "concepts": [{"name": "controlled-swap"}, {"name": "ancilla"}]}]}, "s")


def test_curate_imports_no_torch():
    code = "import sys, jobs.curate.run, jobs.curate.__main__; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0


@pytest.mark.slow
def test_semantic_selection_adds_paragraphs_close_to_eval_topics(tmp_path, smoke_spec):
    (tmp_path / "e.md").write_text(DOC)
    docs, _, _ = load_documents([tmp_path], "skip")
    off = select.select(docs, curate_spec(smoke_spec, min_paragraph_chars=40, semantic_selection=False).curate, SUITE,
                        Counter()).selected
    assert off == []  # no spec keyword in either paragraph
    counts = Counter()
    on = select.select(docs, curate_spec(smoke_spec, min_paragraph_chars=40, semantic_selection=True).curate,
                       SUITE, counts).selected
    assert [(s.paragraph.text[:14], s.reason) for s in on] == [("The swap test ", "semantic")]
    assert counts["selected_semantic"] == 1 and counts["skipped_no_keyword"] == 1
