"""The dataset folder (docs/architecture.md, "Dataset folder"): its parquet schemas, its content hash, and a
writer that makes the folder appear complete or not at all. Curate writes it; synthesize reads one and writes
another; train and eval read it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.core.errors import QslmError
from jobs.core.store.outputs import share
from jobs.core.store.provenance import sha256_file

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
EXAMPLE_SCHEMA = pa.schema([
    ("id", pa.string()), ("messages", MESSAGES), ("template", pa.string()),
    ("origin", pa.string()),  # template (curate) | synthetic (a writer's Q&A) | paraphrase (a writer's rewrite)
    ("writer", pa.string()),  # "" for template examples; else the writer that made it (model and revision)
    ("source_path", pa.string()), ("source_sha256", pa.string()), ("section", pa.string()),
    ("paragraph_ids", pa.list_(pa.string())), ("keywords", pa.list_(pa.string())),
])
HELDOUT_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("source_path", pa.string()),
                            ("section", pa.string())])
CONTEXT = pa.list_(pa.struct([("id", pa.string()), ("kind", pa.string()), ("text", pa.string())]))
# The selected paragraphs with their context, for the synthesis stage; `split` says which side of the held-out
# split the paragraph's section is on (synthesis writes examples from `train` paragraphs only).
PARAGRAPH_SCHEMA = pa.schema([
    ("id", pa.string()), ("text", pa.string()), ("kind", pa.string()), ("source_path", pa.string()),
    ("source_sha256", pa.string()), ("section", pa.string()), ("keywords", pa.list_(pa.string())),
    ("reason", pa.string()), ("split", pa.string()), ("language", pa.string()),
    ("before", CONTEXT), ("after", CONTEXT),
])
# Every paragraph curate parsed from the build's sources, selected or not, held out or not, in document order:
# what a suite's paragraph ids are checked against, and what a reader of the build can look a paragraph up in.
# `page` is the 1-based PDF page (0 where the format has none); `selected`: kept as a training/eval paragraph
# (after near-duplicates); `split`: the side of the held-out split the paragraph is on (`train` | `eval`).
CATALOGUE_SCHEMA = pa.schema([
    ("id", pa.string()), ("text", pa.string()), ("kind", pa.string()), ("source_path", pa.string()),
    ("source_sha256", pa.string()), ("section", pa.string()), ("page", pa.int32()), ("selected", pa.bool_()),
    ("split", pa.string()), ("language", pa.string()),
])
DATA_FILES = ("train.parquet", "eval.parquet", "heldout.parquet", "paragraphs.parquet", "catalogue.parquet",
              "stats.json")


class DatasetError(QslmError):
    """A dataset folder this version cannot read; the message names the file and the fix."""


def example_id(messages: list[dict]) -> str:
    """An example's id: a hash of its messages, so equal examples share it wherever they were made."""
    return hashlib.sha256(json.dumps(messages, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:24]


def write_parquet(rows: list[dict], schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, compression="zstd", write_statistics=False)


def read_rows(path: Path) -> list[dict]:
    """Every row of one dataset file, through read_table (the one reader and its one error)."""
    return read_table(Path(path).parent, Path(path).name)


def read_table(folder: Path, name: str, columns: Sequence[str] = ()) -> list[dict]:
    """The rows of one file of a dataset folder (only `columns` when given): the one reader train, eval and
    synthesize use, with one error that names the file and the fix."""
    path = Path(folder) / name
    if not path.is_file():
        raise DatasetError(f"{path}: missing from the dataset folder; pass the folder that `python -m jobs.curate "
                           f"--out` (or `python -m jobs.synthesize --out`) wrote as --dataset")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: not a readable parquet file ({str(exc)[:200]}); curate the folder again") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(table.column_names)}); "
                           f"curate the folder again with this version of the code")
    return (table.select(list(columns)) if columns else table).to_pylist()


def dataset_sha256(folder: Path) -> str:
    h = hashlib.sha256()
    for name in DATA_FILES:
        h.update(name.encode() + b"\0" + sha256_file(folder / name).encode() + b"\n")
    return h.hexdigest()


def is_empty_or_absent(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


def write_folder(out: Path, fill: Callable[[Path], list[str]]) -> None:
    """Make `out` appear complete or not at all: `fill(tmp)` writes the files into a temporary sibling folder
    and returns their names, the last one being the stage's info file; then the folder is renamed into place
    (or, when `out` exists empty, e.g. a mount point, the files are moved in, the info file last)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        names = fill(tmp)
        share(tmp)  # mkdtemp's 0700: Argo's executor (another user) would upload nothing (jobs/core/store/outputs.py)
        if out.exists():
            for name in names:
                shutil.move(tmp / name, out / name)  # copies when out is another file system
            tmp.rmdir()
        else:
            tmp.rename(out)  # the dataset folder appears all at once
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# Curate templates whose assistant turn is the source paragraphs themselves, joined by blank lines; `define` and
# `relate` use one paragraph's own sentences, reordered or filtered (a paragraph's text when nothing better is
# known). Other origins (synthetic questions, paraphrases) are written by a model and never taken for source text.
VERBATIM_TEMPLATES = ("explain", "researcher", "engineer")
SENTENCE_TEMPLATES = ("define", "relate")


def _paragraph_texts(rows: list[dict], texts: dict[str, str], near: dict[str, str], meta: dict, split: str):
    for row in rows:
        ids = list(row["paragraph_ids"])
        answer = next((m["content"] for m in row["messages"] if m["role"] == "assistant"), "")
        parts = answer.split("\n\n")
        for pid in ids:
            meta.setdefault(pid, {"source_path": str(row["source_path"]), "section": str(row["section"]),
                                  "split": split})
        if row["template"] in VERBATIM_TEMPLATES and len(parts) == len(ids):
            for pid, text in zip(ids, parts):
                texts.setdefault(pid, text)
        elif row["template"] in SENTENCE_TEMPLATES and len(ids) == 1:
            near.setdefault(ids[0], answer)


def source_paragraphs(train: list[dict], evals: list[dict], heldout: list[dict]) -> list[dict]:
    """Every source paragraph a dataset folder holds, by id: {id, text, source_path, section, split,
    train_examples}, from its train, eval and heldout rows (eval's faithfulness and report, ask's /sources).

    Held-out paragraphs are stored whole; a trained paragraph's text is recovered from the examples that quote it
    (VERBATIM_TEMPLATES). split: "held out", "trained on" or "eval split"; train_examples: how many training
    examples (of any origin) drew on it."""
    texts, near, meta = {}, {}, {}
    for row in heldout:
        texts[str(row["id"])] = str(row["text"])
        meta[str(row["id"])] = {"source_path": str(row["source_path"]), "section": str(row["section"]),
                                "split": "held out"}
    _paragraph_texts(train, texts, near, meta, "trained on")
    _paragraph_texts(evals, texts, near, meta, "eval split")
    counts: dict[str, int] = {}
    for row in train:
        for pid in row["paragraph_ids"]:
            counts[pid] = counts.get(pid, 0) + 1
    out = []
    for pid in sorted(meta):
        text = texts.get(pid) or near.get(pid, "")
        if text.strip():
            out.append({"id": pid, "text": text, **meta[pid], "train_examples": counts.get(pid, 0)})
    return out
