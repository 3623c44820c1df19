"""Reading the curate stage's dataset folder: held-out text, system prompt, source paragraphs."""

from __future__ import annotations

import pandas as pd
import pytest

from jobs.core.store.dataset_folder import DatasetError
from jobs.eval import dataset

from .conftest import PARAGRAPHS, write_dataset


def test_reads_heldout_system_prompt_and_stats(tmp_path):
    folder = write_dataset(tmp_path / "d")
    assert len(dataset.heldout_texts(folder)) == 2
    assert dataset.system_prompt(folder) == "You answer about quantum ML."
    assert dataset.stats(folder)["documents"] == 2
    assert dataset.stats(tmp_path) == {}


def test_source_paragraphs_by_id_with_split_and_training_examples(tmp_path):
    folder = write_dataset(tmp_path / "d")
    paragraphs = {p["id"]: p for p in dataset.source_paragraphs(folder)}
    assert set(paragraphs) == {pid for *_, pid in PARAGRAPHS}
    trained = paragraphs["thesis/kernels.tex#kernels/definition#p0"]
    assert trained["text"] == PARAGRAPHS[0][0] and trained["split"] == "trained on" and trained["train_examples"] == 1
    held = paragraphs["notes/noise.md#noise/channels#p0"]
    assert held["split"] == "held out" and held["train_examples"] == 0 and held["source_path"] == "notes/noise.md"


def test_paragraph_text_comes_only_from_examples_that_quote_it(tmp_path):
    folder = write_dataset(tmp_path / "d")
    two = {"id": "two", "messages": [{"role": "user", "content": "Explain."},
                                     {"role": "assistant", "content": "First paragraph.\n\nSecond paragraph."}],
           "template": "explain", "source_path": "a.md", "source_sha256": "0" * 64, "section": "A",
           "paragraph_ids": ["a.md#a#p0", "a.md#a#p1"], "keywords": []}
    made_up = dict(two, id="syn", template="synthetic", paragraph_ids=["a.md#a#p2"],
                   messages=[{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A model wrote this."}])
    frame = pd.concat([pd.read_parquet(folder / "train.parquet"), pd.DataFrame([two, made_up])])
    frame.to_parquet(folder / "train.parquet")
    texts = {p["id"]: p["text"] for p in dataset.source_paragraphs(folder)}
    assert texts["a.md#a#p0"] == "First paragraph." and texts["a.md#a#p1"] == "Second paragraph."
    assert "a.md#a#p2" not in texts  # a synthetic answer is not source text
    examples = dataset.training_examples(folder)
    assert [e["id"] for e in examples] == ["ex0", "ex1", "two", "syn"]
    assert examples[2]["paragraph_ids"] == ["a.md#a#p0", "a.md#a#p1"] and examples[0]["messages"][0]["role"] == "system"


def test_missing_file_and_column_name_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="heldout.parquet: missing from the dataset folder"):
        dataset.heldout_texts(tmp_path)
    pd.DataFrame([{"id": "x", "body": "y"}]).to_parquet(tmp_path / "heldout.parquet")
    with pytest.raises(DatasetError, match="missing column"):
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
