"""Bootstrap confidence intervals: how much a score would move with a different draw of questions.

With 20-30 questions a 0.05 difference can be noise; every mean in the report carries a 95% percentile
interval from resampling questions (or held-out paragraphs, for perplexity) with replacement.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95


def _interval(stats: np.ndarray, point: float) -> dict:
    lo, hi = np.quantile(stats, [(1 - CONFIDENCE) / 2, 1 - (1 - CONFIDENCE) / 2])
    return {"mean": float(point), "low": float(lo), "high": float(hi)}


def bootstrap_mean(values: Sequence[float], samples: int, seed: int) -> dict:
    """Mean of `values` with a 95% bootstrap interval: {"mean", "low", "high"} (all equal for one value)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(samples, x.size))
    return _interval(x[idx].mean(axis=1), x.mean())


def bootstrap_delta(after: Sequence[float], before: Sequence[float], samples: int, seed: int) -> dict:
    """Paired difference after - before (same questions both times), with a 95% bootstrap interval.

    Resampling the per-question differences keeps the pairing, so an interval that excludes 0 means the
    change holds across questions, not only on average."""
    a, b = np.asarray(after, dtype=float), np.asarray(before, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired delta needs equal lengths, got {a.size} and {b.size}")
    return bootstrap_mean(a - b, samples, seed)


def bootstrap_perplexity(nll: Sequence[float], tokens: Sequence[int], samples: int, seed: int) -> dict:
    """Corpus perplexity exp(sum nll / sum tokens) with a 95% interval from resampling paragraphs."""
    n, t = np.asarray(nll, dtype=float), np.asarray(tokens, dtype=float)
    if n.size == 0 or t.sum() == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n.size, size=(samples, n.size))
    stats = np.exp(n[idx].sum(axis=1) / np.maximum(t[idx].sum(axis=1), 1.0))
    return _interval(stats, math.exp(n.sum() / t.sum()))
