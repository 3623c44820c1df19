"""Every generation cached in the store (jobs/core/keys.py synthesis_cache_key), keyed by what determines it:
the paragraph with its context (sha256), the prompt version, the writer (model and revision), the sampling
settings, the seed, and the request itself. A rerun finds every reply and calls no writer; a changed paragraph
changes only its own requests' keys. The local build and the cluster use the same store (QSLM_STORE).
"""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor

from jobs.core import keys
from jobs.synthesize.prompts import PROMPT_VERSION
from jobs.core.writers import Request

FETCH_THREADS = 16  # parallel GETs: an S3 round trip is ~10 ms, thousands of replies are read per run


def writer_slug(name: str) -> str:
    """A key-safe folder name for a writer: readable, plus a hash so two names never collide."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]


def determinants(r: Request, writer: str) -> dict:
    """Everything that determines a request's reply: hashed into its key, stored beside the reply."""
    return {"prompt_version": PROMPT_VERSION, "writer": writer, "paragraph_sha256": r.paragraph_sha256,
            "sampling": r.sampling(), "messages": r.messages, "options": list(r.options)}


def request_key(r: Request, writer: str) -> str:
    return hashlib.sha256(json.dumps(determinants(r, writer), sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class GenerationCache:
    def __init__(self, store, writer_name: str):
        self.store, self.writer = store, writer_name
        self.slug = writer_slug(writer_name)
        self.known = set(store.list(keys.synthesis_cache_prefix(self.slug)))  # one listing, not a HEAD per reply

    def _key(self, r: Request) -> str:
        return keys.synthesis_cache_key(self.slug, request_key(r, self.writer))

    def replies(self, requests: list[Request], writer) -> tuple[list[str], int]:
        """The reply to every request, from the cache or else from the writer (each new reply is stored as it
        arrives, so an interrupted run resumes). Returns (replies, how many the writer was asked for)."""
        keys_ = [self._key(r) for r in requests]
        replies: list[str | None] = [None] * len(requests)
        cached = [i for i, k in enumerate(keys_) if k in self.known]
        with ThreadPoolExecutor(FETCH_THREADS) as pool:
            for i, data in zip(cached, pool.map(lambda i: self.store.get_bytes(keys_[i]), cached)):
                replies[i] = json.loads(data)["reply"]
        missing = [i for i, reply in enumerate(replies) if reply is None]

        def done(j: int, reply: str) -> None:
            i = missing[j]
            record = {"reply": reply, **determinants(requests[i], self.writer)}
            self.store.put_bytes(keys_[i], json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
            self.known.add(keys_[i])
            replies[i] = reply

        if missing:
            writer.run([requests[i] for i in missing], done)
        return replies, len(missing)
