"""catalogue.parquet: every parsed paragraph, selected or not, in document order, with its page and split side."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from jobs.core.dataset_folder import CATALOGUE_SCHEMA, DATA_FILES, dataset_sha256
from jobs.curate.run import curate
from tests.curate.conftest import curate_spec, read_rows
from tests.curate.pdfs import make_pdf

NOTES = """# Kernels

A quantum kernel compares two data points through the overlap of their feature-map states in Hilbert space.

# Campus

The cafeteria opens at nine and serves coffee until the afternoon, every day of the week.

# Noise

Depolarizing noise on NISQ hardware flattens the kernel matrix towards a constant, which hurts the classifier.
"""


def test_catalogue_lists_every_parsed_paragraph(smoke_spec, tiny_model, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a-notes.md").write_text(NOTES, encoding="utf-8")
    (docs / "b-paper.pdf").write_bytes(make_pdf([
        ["1. Fidelity", "The fidelity kernel is estimated with the swap test on quantum hardware."],
        ["Each estimate of the fidelity kernel needs many shots, so noise matters on NISQ devices."]]))
    out = tmp_path / "out"
    curate(curate_spec(smoke_spec, min_paragraph_chars=40), out, [docs], quiet=True)

    assert "catalogue.parquet" in DATA_FILES
    assert pq.read_table(out / "catalogue.parquet").schema.equals(CATALOGUE_SCHEMA)
    rows = read_rows(out, "catalogue")
    stats = json.loads((out / "stats.json").read_text())
    assert len(rows) == stats["paragraphs"]["seen"]
    assert [r["source_path"] for r in rows] == sorted(r["source_path"] for r in rows)  # document order
    md = [r for r in rows if r["source_path"].endswith(".md")]
    assert [r["section"] for r in md] == ["Kernels", "Campus", "Noise"]  # in document order
    assert {r["page"] for r in md} == {0}
    pdf = [r for r in rows if r["source_path"].endswith(".pdf")]
    assert [r["page"] for r in pdf] == [1, 2]
    # selected = the paragraphs kept for training or eval, exactly
    kept = {r["id"] for r in read_rows(out, "paragraphs")}
    assert {r["id"] for r in rows if r["selected"]} == kept
    assert [r["selected"] for r in md] == [True, False, True]  # the cafeteria names no keyword
    # every paragraph is on one side of the held-out split, the side of its section
    held = set(stats["sections"]["held_out_keys"])
    assert all(r["split"] == ("eval" if r["id"].rsplit("#p", 1)[0] in held else "train") for r in rows)
    assert {r["language"] for r in rows} == {"en"} and all(r["source_sha256"] and r["kind"] for r in rows)
    # the dataset hash covers it
    before = dataset_sha256(out)
    (out / "catalogue.parquet").write_bytes(b"changed")
    assert dataset_sha256(out) != before
