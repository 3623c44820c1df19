"""The index stage: a dataset folder's catalogue in, an index folder out (complete or absent, readable by another
user), and one clear error for a dataset without a catalogue or an output folder that holds files."""

from __future__ import annotations

import pytest

from jobs.core.store.dataset_folder import CATALOGUE_SCHEMA, write_parquet
from jobs.core.spec.load import load_spec
from jobs.index import run
from jobs.index.__main__ import main
from tests.core.retrieval.test_hybrid import ROWS, bag_embed


def test_index_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run, "load_passage_embedder", lambda name: bag_embed)
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    spec = tmp_path / "s.yaml"
    spec.write_text("base_model: {id: x}\ncurate: {keywords: [kernel]}\neval: {suite: data/eval/core.yaml}\nretrieval: {embedders: [minilm]}\n")
    assert main(["--spec", str(spec), "--dataset", str(dataset), "--out", str(tmp_path / "index")]) == 2
    assert "catalogue.parquet: no catalogue" in capsys.readouterr().err
    write_parquet([{**r, "page": r["page"]} for r in ROWS], CATALOGUE_SCHEMA, dataset / "catalogue.parquet")
    out = tmp_path / "mount"
    out.mkdir(mode=0o700)  # an empty mount point: the files move in, index.json last
    info = run.build(load_spec(spec), dataset, out)
    assert info["passages"] == 4 and (out / "index.json").is_file() and out.stat().st_mode & 0o777 == 0o755
    assert not list(tmp_path.glob(".*partial*"))
    with pytest.raises(run.IndexStageError, match="not empty"):
        run.build(load_spec(spec), dataset, out)
