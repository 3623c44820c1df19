"""What eval reads from the curate stage's dataset folder: held-out paragraphs, the system prompt the model
was trained with, dataset stats, and candidate source paragraphs for the report's worst answers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from jobs.eval import EvalError

SPLITS = (("train.parquet", "trained on"), ("eval.parquet", "eval split"))


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


def candidate_paragraphs(dataset_dir: Path) -> list[dict]:
    """Paragraph-sized texts with where they came from and whether the adapter saw them in training."""
    dataset_dir = Path(dataset_dir)
    out = []
    heldout = _read(dataset_dir / "heldout.parquet", ["text", "source_path", "section"])
    for row in heldout.itertuples():
        out.append({"text": str(row.text), "source_path": str(row.source_path), "section": str(row.section),
                    "split": "held out"})
    for name, split in SPLITS:
        frame = _read(dataset_dir / name, ["messages", "source_path", "section"])
        for row in frame.itertuples():
            # The assistant turn of an example is the text drawn from the source paragraph(s).
            text = next((m["content"] for m in row.messages if m["role"] == "assistant"), "")
            out.append({"text": str(text), "source_path": str(row.source_path), "section": str(row.section),
                        "split": split})
    seen, unique = set(), []
    for p in out:
        if p["text"].strip() and p["text"] not in seen:
            seen.add(p["text"])
            unique.append(p)
    return unique


def same_source(question_source: str, source_path: str) -> bool:
    """Suite sources are repository-relative (data/raw/x.tex); dataset paths may be relative to a sources dir."""
    a, b = question_source.strip("/"), source_path.strip("/")
    return bool(a and b) and (a == b or a.endswith("/" + b) or b.endswith("/" + a))
