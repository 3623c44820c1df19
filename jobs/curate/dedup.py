"""Duplicates and leakage: exact and near-duplicate paragraphs (MinHash LSH over word 5-shingles), duplicate
examples, and training examples that nearly copy an eval question or reference answer.
"""

from __future__ import annotations

import hashlib
import re

from datasketch import MinHash, MinHashLSH

SHINGLE_WORDS = 5
NUM_PERM = 64  # MinHash permutations: Jaccard error about 1/sqrt(64) = 0.125 before the exact check
WORD = re.compile(r"\w+", re.U)


def normalize(text: str) -> str:
    return " ".join(WORD.findall(text.lower()))


def shingles(text: str, n: int = SHINGLE_WORDS) -> set[str]:
    words = WORD.findall(text.lower())
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def dedup_paragraphs(items: list, text_of, id_of, threshold: float) -> tuple[list, list[dict]]:
    """Keep the first of each group of exact or near-duplicate texts (input order decides, so sort first).
    Returns (kept, removed [{id, duplicate_of, kind, similarity}])."""
    kept, removed, exact = [], [], {}
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    template = MinHash(num_perm=NUM_PERM, seed=1)
    permutations = template.permutations  # made once: they cost more than hashing the shingles
    sets = {}
    for idx, item in enumerate(items):
        text = text_of(item)
        norm = normalize(text)
        h = hashlib.sha256(norm.encode()).hexdigest()
        if h in exact:
            removed.append({"id": id_of(item), "duplicate_of": id_of(items[exact[h]]), "kind": "exact",
                            "similarity": 1.0})
            continue
        sh = shingles(text)
        m = MinHash(num_perm=NUM_PERM, seed=1, permutations=permutations, scheme=template.scheme)
        m.update_batch([s.encode() for s in sh])
        match = None
        for other in sorted(lsh.query(m)):
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
        lsh.insert(idx, m)
        kept.append(item)
    return kept, removed


def dedup_examples(rows: list[dict]) -> tuple[list[dict], int]:
    """Drop examples whose messages are identical (same content hash id)."""
    seen, out = set(), []
    for r in rows:
        if r["id"] not in seen:
            seen.add(r["id"])
            out.append(r)
    return out, len(rows) - len(out)


def leakage(rows: list[dict], suite: dict, threshold: float) -> tuple[list[dict], list[dict]]:
    """Remove training examples that contain a near copy of an eval question or reference answer: the share
    of the eval text's 5-shingles found in the example reaches `threshold`. Returns (kept, removed report)."""
    probes = []
    for q in suite.get("questions") or []:
        for field in ("question", "reference"):
            sh = shingles(str(q.get(field) or ""))
            if sh:
                probes.append((q.get("id", "?"), field, sh))
    if not probes:
        return rows, []
    index: dict[str, set[int]] = {}
    for k, (_, _, sh) in enumerate(probes):
        for s in sh:
            index.setdefault(s, set()).add(k)
    kept, removed = [], []
    for r in rows:
        text = "\n".join(m["content"] for m in r["messages"])
        hits: dict[int, int] = {}
        for s in shingles(text):
            for k in index.get(s, ()):
                hits[k] = hits.get(k, 0) + 1
        leaked = [(probes[k], n / len(probes[k][2])) for k, n in hits.items() if n / len(probes[k][2]) >= threshold]
        if leaked:
            (qid, field, _), share = max(leaked, key=lambda x: (x[1], x[0][0]))
            removed.append({"id": r["id"], "eval_question": qid, "field": field, "overlap": round(share, 4),
                            "paragraph_ids": r["paragraph_ids"]})
        else:
            kept.append(r)
    return kept, removed
