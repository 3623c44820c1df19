"""What eval reads from the curate stage's dataset folder: held-out paragraphs, the system prompt the model
was trained with, dataset stats, the source paragraphs by id (faithfulness, worst answers, where to add data)
and the training examples (memorised vs generalised)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

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


# Curate templates whose assistant turn is the source paragraphs themselves, joined by blank lines; `define` and
# `relate` use one paragraph's own sentences, reordered or filtered (a paragraph's text when nothing better is
# known). Other origins (synthetic questions, paraphrases) are written by a model and never taken for source text.
VERBATIM_TEMPLATES = ("explain", "researcher", "engineer")
SENTENCE_TEMPLATES = ("define", "relate")


def _paragraph_texts(frame: pd.DataFrame, texts: dict[str, str], near: dict[str, str], meta: dict, split: str):
    for row in frame.itertuples():
        ids = list(row.paragraph_ids)
        answer = next((m["content"] for m in row.messages if m["role"] == "assistant"), "")
        parts = answer.split("\n\n")
        for pid in ids:
            meta.setdefault(pid, {"source_path": str(row.source_path), "section": str(row.section), "split": split})
        if row.template in VERBATIM_TEMPLATES and len(parts) == len(ids):
            for pid, text in zip(ids, parts):
                texts.setdefault(pid, text)
        elif row.template in SENTENCE_TEMPLATES and len(ids) == 1:
            near.setdefault(ids[0], answer)


def source_paragraphs(dataset_dir: Path) -> list[dict]:
    """Every source paragraph the dataset holds, by id: {id, text, source_path, section, split, train_examples}.

    Held-out paragraphs are stored whole; a trained paragraph's text is recovered from its examples (see
    VERBATIM_TEMPLATES). split: "held out", "trained on" or "eval split"; train_examples: how many training
    examples (of any origin) drew on it."""
    dataset_dir = Path(dataset_dir)
    cols = ["messages", "template", "source_path", "section", "paragraph_ids"]
    train, evals = _read(dataset_dir / "train.parquet", cols), _read(dataset_dir / "eval.parquet", cols)
    heldout = _read(dataset_dir / "heldout.parquet", ["id", "text", "source_path", "section"])
    texts, near, meta = {}, {}, {}
    for row in heldout.itertuples():
        texts[str(row.id)] = str(row.text)
        meta[str(row.id)] = {"source_path": str(row.source_path), "section": str(row.section), "split": "held out"}
    _paragraph_texts(train, texts, near, meta, "trained on")
    _paragraph_texts(evals, texts, near, meta, "eval split")
    counts: dict[str, int] = {}
    for ids in train["paragraph_ids"]:
        for pid in ids:
            counts[pid] = counts.get(pid, 0) + 1
    out = []
    for pid in sorted(meta):
        text = texts.get(pid) or near.get(pid, "")
        if text.strip():
            out.append({"id": pid, "text": text, **meta[pid], "train_examples": counts.get(pid, 0)})
    return out


def training_examples(dataset_dir: Path) -> list[dict]:
    """The training examples as {id, template, messages, paragraph_ids}, in the file's order."""
    frame = _read(Path(dataset_dir) / "train.parquet", ["id", "messages", "template", "paragraph_ids"])
    return [{"id": str(r.id), "template": str(r.template), "messages": [dict(m) for m in r.messages],
             "paragraph_ids": [str(p) for p in r.paragraph_ids]} for r in frame.itertuples()]


def same_source(question_source: str, source_path: str) -> bool:
    """Suite sources are repository-relative (data/raw/x.tex); dataset paths may be relative to a sources dir."""
    a, b = question_source.strip("/"), source_path.strip("/")
    return bool(a and b) and (a == b or a.endswith("/" + b) or b.endswith("/" + a))
