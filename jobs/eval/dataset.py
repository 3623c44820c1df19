"""What eval reads from the curate stage's dataset folder: held-out paragraphs, the system prompt the model
was trained with, dataset stats, the source paragraphs by id (faithfulness, worst answers, where to add data)
and the training examples (memorised vs generalised)."""

from __future__ import annotations

import json
from pathlib import Path

from jobs.core.store import dataset_folder
from jobs.core.store.dataset_folder import read_table


def heldout_texts(dataset_dir: Path) -> list[str]:
    """Source paragraphs of held-out sections, for perplexity (empty paragraphs dropped)."""
    rows = read_table(dataset_dir, "heldout.parquet", ["id", "text", "source_path", "section"])
    return [str(r["text"]) for r in rows if str(r["text"]).strip()]


def system_prompt(dataset_dir: Path) -> str | None:
    """The system message of the training examples (None when they have none), so questions are asked the
    way the adapter was trained; without it the chat template inserts the model's default system prompt."""
    for messages in (r["messages"] for r in read_table(dataset_dir, "train.parquet", ["messages"])[:50]):
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
    rows = [read_table(dataset_dir, name, cols) for name in ("train.parquet", "eval.parquet")]
    heldout = read_table(dataset_dir, "heldout.parquet", ["id", "text", "source_path", "section"])
    return dataset_folder.source_paragraphs(*rows, heldout)


def training_examples(dataset_dir: Path) -> list[dict]:
    """The training examples as {id, template, messages, paragraph_ids}, in the file's order."""
    rows = read_table(dataset_dir, "train.parquet", ["id", "messages", "template", "paragraph_ids"])
    return [{"id": str(r["id"]), "template": str(r["template"]), "messages": [dict(m) for m in r["messages"]],
             "paragraph_ids": [str(p) for p in r["paragraph_ids"]]} for r in rows]


def same_source(question_source: str, source_path: str) -> bool:
    """Suite sources are repository-relative (data/raw/x.tex); dataset paths may be relative to a sources dir."""
    a, b = question_source.strip("/"), source_path.strip("/")
    return bool(a and b) and (a == b or a.endswith("/" + b) or b.endswith("/" + a))
