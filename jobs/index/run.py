"""Build a retrieval index folder from a dataset folder (python -m jobs.index)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from jobs.core.errors import QslmError
from jobs.core.store.provenance import sha256_file
from jobs.core.retrieval.hybrid import DIR_MODE, load_passage_embedder, write_index
from jobs.core.spec.schema import BuildSpec, RetrievalSpec

CATALOGUE = "catalogue.parquet"


class IndexStageError(QslmError):
    """The index stage cannot run on these inputs."""


def build(spec: BuildSpec, dataset: Path, out: Path) -> dict:
    """Write the index of `dataset`'s catalogue into `out` (absent or empty); appears complete or not at all."""
    import pyarrow.parquet as pq

    catalogue = dataset / CATALOGUE
    if not catalogue.is_file():
        raise IndexStageError(f"{catalogue}: no catalogue; curate this dataset again with this version "
                              f"(python -m jobs.curate) so it lists every paragraph")
    if out.exists() and any(out.iterdir()):
        raise IndexStageError(f"{out}: not empty; give a new folder for the index")
    settings = spec.retrieval or RetrievalSpec()
    start = time.perf_counter()
    rows = pq.read_table(catalogue).to_pylist()
    embedders = {name: load_passage_embedder(name) for name in settings.embedders}
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        info = write_index(rows, partial, embedders, catalogue_sha256=sha256_file(catalogue))
        if out.exists():  # an empty mount point: move the files in, index.json last
            for path in sorted(partial.iterdir(), key=lambda p: p.name == "index.json"):
                shutil.move(path, out / path.name)
            partial.rmdir()
            out.chmod(DIR_MODE)
        else:
            partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    print(f"  index:      {info['passages']} passages of {info['paragraphs']} paragraphs, BM25 + "
          f"{', '.join(info['embedders'])}, {time.perf_counter() - start:.1f} s\n  wrote {out}")
    return info
