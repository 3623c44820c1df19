"""The build's own source paragraphs nearest to an answer (`/sources` in the chat).

The paragraphs come from the build's dataset artifact, as eval reads them (jobs/core/store/dataset_folder.py
`source_paragraphs`: held-out paragraphs whole, trained ones from the examples that quote them). They are embedded
once per session with the shared MiniLM embedder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs.core.store.dataset_folder import read_rows, source_paragraphs


@dataclass(frozen=True)
class Passage:
    ids: tuple[str, ...]  # paragraph ids: <document>#<section-slugs>#p<index>
    file: str
    section: str
    text: str


def _rows(path: Path) -> list[dict]:
    return read_rows(path) if path.is_file() else []


def passages(dataset_dir: Path) -> list[Passage]:
    """One passage per source paragraph whose text the dataset holds (never a model-written answer)."""
    found = source_paragraphs(*(_rows(dataset_dir / name) for name in ("train.parquet", "eval.parquet",
                                                                       "heldout.parquet")))
    return [Passage((p["id"],), p["source_path"], p["section"], p["text"]) for p in found]


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
