"""Eval's trust checks, without a model: a suite about other documents refused, a comparison across suites or
base models said, draft questions counted apart."""

import dataclasses

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from jobs.core.store.dataset_folder import CATALOGUE_SCHEMA
from jobs.core.spec.suite import load_suite
from jobs.eval import EvalError, trust
from tests.eval.conftest import SUITE


@pytest.fixture
def suite(tmp_path):
    data = {**SUITE, "questions": [dict(q, status="draft") if q["id"] == "qk-02" else q for q in SUITE["questions"]]}
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_suite(path)


def _catalogue(folder, ids_selected):
    rows = [{"id": i, "text": "t", "kind": "prose", "source_path": i.split("#")[0], "source_sha256": "0",
             "section": "s", "page": 0, "selected": sel, "split": "train", "language": "en"}
            for i, sel in ids_selected]
    pq.write_table(pa.Table.from_pylist(rows, schema=CATALOGUE_SCHEMA), folder / "catalogue.parquet")


def test_suite_ids_checked_against_the_catalogue(suite, tmp_path):
    assert "were not checked" in trust.check_suite(suite, tmp_path)[0]  # an old folder: said, not silent
    _catalogue(tmp_path, [("other.md#x#p0", True)])
    with pytest.raises(EvalError, match=r"thesis/kernels.tex#kernels/definition#p0 \(asked by qk-01\)"):
        trust.check_suite(suite, tmp_path)
    _catalogue(tmp_path, [("thesis/kernels.tex#kernels/definition#p0", False)])
    assert "not selected for training" in trust.check_suite(suite, tmp_path)[0]


def test_comparison_across_suites_or_bases_is_said(suite, smoke_spec):
    same = {"tag": "v1", "suite": {"name": suite.name, "sha256": suite.sha256}, "base_model": "tiny-qwen2"}
    assert trust.comparison(smoke_spec, suite, same) == [] and trust.comparison(smoke_spec, suite, None) == []
    other = dict(same, suite={"name": "core", "sha256": "f" * 64}, base_model="Qwen/Qwen2.5-1.5B-Instruct")
    notes = trust.comparison(smoke_spec, suite, other)
    assert len(notes) == 2 and all(n.startswith("NOT LIKE FOR LIKE") for n in notes)
    assert "different questions" in notes[0] and "Qwen/Qwen2.5-1.5B-Instruct" in notes[1]


def test_drafts_are_counted_apart(suite, smoke_spec):
    rows = [{"id": q.id, "expect": q.expect, "adapter": {"concept_recall": 1.0 if q.id == "qk-02" else 0.5,
                                                          "similarity": 0.5}} for q in suite.questions]
    s = trust.summary(dataclasses.replace(smoke_spec, name="mine"), suite, rows, [], None)
    assert s["status"]["draft"] == 1 and s["status"]["reviewed"] == 3
    assert s["status"]["by_status"]["draft"]["concept_recall"] == 1.0
    assert s["status"]["by_status"]["reviewed"]["concept_recall"] == 0.5  # qk-01, nz-01 (the abstain item apart)
    assert "1 of 4 questions are drafts" in s["notes"][0] and "make review VERSION=mine" in s["notes"][0]
