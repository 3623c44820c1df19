"""Near duplicates, shared by curate and synthesize: word 5-shingles, MinHash LSH, and dedup of any items by
their text (input order decides which of a group is kept). numpy only, so the curate image needs no scipy.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

SHINGLE_WORDS = 5
NUM_PERM = 64  # MinHash permutations: Jaccard error about 1/sqrt(64) = 0.125 before the exact check
WORD = re.compile(r"\w+", re.U)
_RNG = np.random.default_rng(1)
# Multiply-shift hash family on 64-bit words (uint64 arithmetic wraps, which is the intended mod 2**64).
_A = _RNG.integers(1, 2**63, NUM_PERM, dtype=np.uint64) | np.uint64(1)
_B = _RNG.integers(0, 2**63, NUM_PERM, dtype=np.uint64)


def minhash(sh: set[str]) -> np.ndarray:
    """NUM_PERM-value MinHash signature of a shingle set."""
    if not sh:
        return np.full(NUM_PERM, np.iinfo(np.uint64).max, dtype=np.uint64)
    x = np.fromiter((int.from_bytes(hashlib.blake2b(s.encode(), digest_size=4).digest(), "little") for s in sh),
                    dtype=np.uint64, count=len(sh))
    return ((_A[:, None] * x[None, :] + _B[:, None]) >> np.uint64(32)).min(axis=1)


def lsh_bands(threshold: float) -> int:
    """Number of LSH bands: the split of NUM_PERM whose S-curve midpoint (1/b)**(1/r) is the highest one not
    above `threshold`, so candidate recall is high; the exact Jaccard check then decides."""
    options = [(b, NUM_PERM // b) for b in (1, 2, 4, 8, 16, 32, 64)]
    below = [(b, r) for b, r in options if (1 / b) ** (1 / r) <= threshold]
    return max(below, key=lambda br: (1 / br[0]) ** (1 / br[1]))[0] if below else NUM_PERM


def normalize(text: str) -> str:
    return " ".join(WORD.findall(text.lower()))


def shingles(text: str, n: int = SHINGLE_WORDS) -> set[str]:
    words = WORD.findall(text.lower())
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def dedup(items: list, text_of, id_of, threshold: float) -> tuple[list, list[dict]]:
    """Keep the first of each group of exact or near-duplicate texts (input order decides, so sort first).
    Returns (kept, removed [{id, duplicate_of, kind, similarity}])."""
    kept, removed, exact = [], [], {}
    bands = lsh_bands(threshold)
    rows = NUM_PERM // bands
    buckets: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
    sets = {}
    for idx, item in enumerate(items):
        text = text_of(item)
        h = hashlib.sha256(normalize(text).encode()).hexdigest()
        if h in exact:
            removed.append({"id": id_of(item), "duplicate_of": id_of(items[exact[h]]), "kind": "exact",
                            "similarity": 1.0})
            continue
        sh = shingles(text)
        sig = minhash(sh)
        keys = [sig[i * rows:(i + 1) * rows].tobytes() for i in range(bands)]
        candidates = {o for band, k in zip(buckets, keys) for o in band.get(k, ())}
        match = None
        for other in sorted(candidates):
            sim = jaccard(sh, sets[other])  # MinHash proposes, the exact Jaccard decides
            if sim >= threshold:
                match = (other, sim)
                break
        if match:
            removed.append({"id": id_of(item), "duplicate_of": id_of(items[match[0]]), "kind": "near",
                            "similarity": round(match[1], 4)})
            continue
        exact[h] = idx
        sets[idx] = sh
        for band, k in zip(buckets, keys):
            band.setdefault(k, []).append(idx)
        kept.append(item)
    return kept, removed
