"""Reading the curate stage's dataset folder: held-out text, system prompt, source paragraphs."""

from __future__ import annotations

import pytest

from jobs.eval import EvalError, dataset

from .conftest import write_dataset


def test_reads_heldout_system_prompt_and_candidates(tmp_path):
    folder = write_dataset(tmp_path / "d")
    assert len(dataset.heldout_texts(folder)) == 2
    assert dataset.system_prompt(folder) == "You answer about quantum ML."
    paragraphs = dataset.candidate_paragraphs(folder)
    # Paragraph 0 is both held out and a training answer in the fixture: listed once, first as held out.
    assert len(paragraphs) == 3
    assert {p["split"] for p in paragraphs} == {"held out", "trained on"}
    assert dataset.stats(folder)["documents"] == 2
    assert dataset.stats(tmp_path) == {}


def test_missing_file_and_column_name_the_fix(tmp_path):
    with pytest.raises(EvalError, match="heldout.parquet: missing from the dataset folder"):
        dataset.heldout_texts(tmp_path)
    import pandas as pd

    pd.DataFrame([{"id": "x", "body": "y"}]).to_parquet(tmp_path / "heldout.parquet")
    with pytest.raises(EvalError, match="missing column"):
        dataset.heldout_texts(tmp_path)


@pytest.mark.parametrize("question_source, dataset_path, same", [
    ("data/raw/thesis/kernels.tex", "thesis/kernels.tex", True),
    ("data/raw/thesis/kernels.tex", "data/raw/thesis/kernels.tex", True),
    ("data/raw/thesis/kernels.tex", "notes/kernels.tex", False),
    ("data/raw/thesis/kernels.tex", "els.tex", False),  # path components, not string suffixes
    ("", "thesis/kernels.tex", False),
])
def test_same_source(question_source, dataset_path, same):
    assert dataset.same_source(question_source, dataset_path) is same
