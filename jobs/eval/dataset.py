"""What eval reads from the curate stage's dataset folder: held-out paragraphs, the system prompt the model
was trained with, dataset stats, the source paragraphs by id (faithfulness, worst answers, where to add data)
and the training examples (memorised vs generalised)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from jobs.core.store import dataset_folder
from jobs.eval import EvalError


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise EvalError(f"{path}: missing from the dataset folder; pass the curate stage's --out "
                        f"folder as --dataset (it writes train/eval/heldout.parquet and stats.json)")
    frame = pd.read_parquet(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise EvalError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(frame.columns)}); "
                        f"re-run curate with this version of the code")
    return frame


def heldout_texts(dataset_dir: Path) -> list[str]:
    """Source paragraphs of held-out sections, for perplexity (empty paragraphs dropped)."""
    frame = _read(Path(dataset_dir) / "heldout.parquet", ["id", "text", "source_path", "section"])
    return [t for t in frame["text"].astype(str) if t.strip()]


def system_prompt(dataset_dir: Path) -> str | None:
    """The system message of the training examples (None when they have none), so questions are asked the
    way the adapter was trained; without it the chat template inserts the model's default system prompt."""
    frame = _read(Path(dataset_dir) / "train.parquet", ["messages"])
    for messages in frame["messages"].head(50):
        for m in messages:
            if m["role"] == "system":
                return str(m["content"])
    return None


def stats(dataset_dir: Path) -> dict:
    path = Path(dataset_dir) / "stats.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def source_paragraphs(dataset_dir: Path) -> list[dict]:
    """Every source paragraph the dataset holds, by id (jobs/core/store/dataset_folder.py `source_paragraphs`)."""
    dataset_dir = Path(dataset_dir)
    cols = ["messages", "template", "source_path", "section", "paragraph_ids"]
    rows = [_read(dataset_dir / name, cols).to_dict("records") for name in ("train.parquet", "eval.parquet")]
    heldout = _read(dataset_dir / "heldout.parquet", ["id", "text", "source_path", "section"]).to_dict("records")
    return dataset_folder.source_paragraphs(*rows, heldout)


def training_examples(dataset_dir: Path) -> list[dict]:
    """The training examples as {id, template, messages, paragraph_ids}, in the file's order."""
    frame = _read(Path(dataset_dir) / "train.parquet", ["id", "messages", "template", "paragraph_ids"])
    return [{"id": str(r.id), "template": str(r.template), "messages": [dict(m) for m in r.messages],
             "paragraph_ids": [str(p) for p in r.paragraph_ids]} for r in frame.itertuples()]


def same_source(question_source: str, source_path: str) -> bool:
    """Suite sources are repository-relative (data/raw/x.tex); dataset paths may be relative to a sources dir."""
    a, b = question_source.strip("/"), source_path.strip("/")
    return bool(a and b) and (a == b or a.endswith("/" + b) or b.endswith("/" + a))
