"""The engine writer on the smoke spec's tiny random model: its choices are valid by construction (facts are
the source's sentences, cloze phrases come from them), its free text is rejected by the filters."""

from __future__ import annotations

import dataclasses
import json

import pytest

from jobs.core.store.dataset_folder import read_rows

pytestmark = pytest.mark.slow


def test_tiny_model_choices_become_clozes_and_its_free_text_is_rejected(smoke_spec, tiny_model, tmp_path,
                                                                        monkeypatch):
    pytest.importorskip("jobs.core.engine", reason="the generation engine (issue 11) is not in this checkout")
    from jobs.curate.run import curate
    from jobs.synthesize.run import synthesize

    monkeypatch.setenv("QSLM_STORE", str(tmp_path / "store"))
    spec = dataclasses.replace(smoke_spec, synthesize=dataclasses.replace(smoke_spec.synthesize, max_paragraphs=2))
    curate(spec, tmp_path / "curated", quiet=True)
    st = synthesize(spec, tmp_path / "curated", tmp_path / "out", quiet=True)["synthesis"]
    sentences = {p["id"]: p["text"] for p in read_rows(tmp_path / "out" / "paragraphs.parquet")}
    rows = [r for r in read_rows(tmp_path / "out" / "train.parquet") if r["origin"] != "template"]
    assert st["facts"]["found"] > 0 and rows and {r["template"] for r in rows} == {"fact-cloze"}
    for r in rows:  # the answer's statement is the paragraph's own sentence
        statement = r["messages"][-1]["content"].split("\n\n", 1)[1].split(": ", 1)[1]
        assert statement in sentences[r["paragraph_ids"][0]] and r["writer"].startswith("engine:tiny-qwen2@")
    assert st["rejected"]["malformed"]["by_kind"].get("fact-qa", 0) == st["facts"]["found"]  # K = 1 per fact
    info = json.loads((tmp_path / "out" / "synthesize-info.json").read_text())
    assert info["calls"]["generated"] == st["requests"] and info["writer_note"].startswith("engine path ")
