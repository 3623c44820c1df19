"""The build's own source paragraphs nearest to an answer (`/sources` in the chat).

The paragraphs come from the build's dataset artifact: the held-out sections' paragraphs as they are, and the
training and eval examples' answers, which curate makes from the source's own sentences and tags with the
paragraph ids they came from. They are embedded once per session with the shared MiniLM embedder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train.parquet", "eval.parquet")


@dataclass(frozen=True)
class Passage:
    ids: tuple[str, ...]  # paragraph ids: <document>#<section-slugs>#p<index>
    file: str
    section: str
    text: str


def _rows(path: Path, columns: list[str]) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns).to_pylist() if path.is_file() else []


def passages(dataset_dir: Path) -> list[Passage]:
    """One passage per paragraph where the text allows it (first seen wins), else per example answer."""
    out: dict[tuple[str, ...], Passage] = {}
    for r in _rows(dataset_dir / "heldout.parquet", ["id", "text", "source_path", "section"]):
        out.setdefault((r["id"],), Passage((r["id"],), r["source_path"], r["section"], r["text"]))
    for split in SPLITS:
        for r in _rows(dataset_dir / split, ["messages", "source_path", "section", "paragraph_ids"]):
            answer = next((m["content"] for m in r["messages"] if m["role"] == "assistant"), "")
            ids, parts = list(r["paragraph_ids"]), answer.split("\n\n")
            # An answer made of several paragraphs joins them with a blank line, in paragraph_ids order.
            pieces = zip(([i] for i in ids), parts) if len(parts) == len(ids) > 1 else [(ids, answer)]
            for pid, text in pieces:
                if text.strip():
                    out.setdefault(tuple(pid), Passage(tuple(pid), r["source_path"], r["section"], text))
    return list(out.values())


class SourceIndex:
    """Passages and their unit vectors; built on first use (embedding a large dataset takes a while)."""

    def __init__(self, dataset_dir: Path, embed):
        self.passages = passages(dataset_dir)
        self.embed = embed
        self.vectors = embed([p.text for p in self.passages]) if self.passages else np.zeros((0, 1), np.float32)

    def nearest(self, text: str, k: int = 3) -> list[tuple[float, Passage]]:
        if not self.passages or not text.strip():
            return []
        scores = self.vectors @ self.embed([text])[0]
        order = np.argsort(-scores)[:k]
        return [(float(scores[i]), self.passages[i]) for i in order]


def format_sources(found: list[tuple[float, Passage]], width: int = 160) -> str:
    if not found:
        return "(the build's dataset holds no source paragraphs to compare with)"
    lines = []
    for score, p in found:
        snippet = " ".join(p.text.split())
        lines.append(f"  {score:.2f}  {', '.join(p.ids)}\n        {p.file} > {p.section or '(no section)'}\n"
                     f"        {snippet[:width]}{'...' if len(snippet) > width else ''}")
    return "\n".join(lines)
