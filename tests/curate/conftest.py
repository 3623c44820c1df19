"""Curate fixtures: the shared real-document corpus (skipped when absent) curated once per session."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import shared

# The real documents live in shared/ beside the repository checkout (as CI lays it out).
CORPUS = Path(os.environ.get("QSLM_CORPUS", shared("corpus")))


def curate_spec(spec, **curate_fields):
    """The spec with some curate fields changed (frozen dataclasses, so a copy). MiniLM selection is off unless
    a test turns it on: loading the embedder takes seconds."""
    curate_fields.setdefault("semantic_selection", False)
    return dataclasses.replace(spec, curate=dataclasses.replace(spec.curate, **curate_fields))


def read_rows(folder: Path, name: str = "train") -> list[dict]:
    return pq.read_table(folder / f"{name}.parquet").to_pylist()


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir() or not any(CORPUS.iterdir()):
        pytest.skip(f"shared corpus {CORPUS} not present (set QSLM_CORPUS to run these tests)")
    return CORPUS


@pytest.fixture(scope="session")
def corpus_dataset(corpus, smoke_spec, tiny_model, tmp_path_factory) -> Path:
    """The whole shared corpus curated with the smoke spec's options."""
    from jobs.curate.run import curate

    out = tmp_path_factory.mktemp("corpus") / "dataset"
    curate(smoke_spec, out, [corpus], quiet=True)
    return out
