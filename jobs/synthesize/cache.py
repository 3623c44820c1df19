"""Every generation cached in the store (jobs/core/store/keys.py synthesis_cache_key), keyed by what determines it:
the paragraph with its context (sha256), the prompt version, the writer (model and revision), the sampling
settings, the seed, and the request itself. A rerun finds every reply and calls no writer; a changed paragraph
changes only its own requests' keys. The local build and the cluster use the same store (QSLM_STORE).
A reply is bounded before it is kept (filters.reply_limit: a longer one is kept as OVERSIZED), and one the
filters would reject as malformed is kept marked `"malformed": true`, never as a success: a reproducible writer
(the engine: same inputs, same reply) reuses it, an endpoint's is asked again by the next run, so a fixed
endpoint replaces what a broken one sent. A damaged entry is asked again. `make gc CLEAR_CACHE=<writer>` clears
one writer's entries.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

from jobs.core import progress
from jobs.core.store import keys
from jobs.synthesize.filters import malformed, reply_limit
from jobs.synthesize.prompts import PROMPT_VERSION
from jobs.core.engine.writers import OVERSIZED, Request

FETCH_THREADS = 16  # parallel GETs: an S3 round trip is ~10 ms, thousands of replies are read per run


def determinants(r: Request, writer: str) -> dict:
    """Everything that determines a request's reply: hashed into its key, stored beside the reply."""
    return {"prompt_version": PROMPT_VERSION, "writer": writer, "paragraph_sha256": r.paragraph_sha256,
            "sampling": r.sampling(), "messages": r.messages, "options": list(r.options)}


def request_key(r: Request, writer: str) -> str:
    return hashlib.sha256(json.dumps(determinants(r, writer), sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class GenerationCache:
    def __init__(self, store, writer_name: str):
        self.store, self.writer = store, writer_name
        self.slug = keys.writer_slug(writer_name)
        self.known = set(store.list(keys.synthesis_cache_prefix(self.slug)))  # one listing, not a HEAD per reply
        self.malformed = 0  # replies received this run that the filters reject as malformed (kept marked so)

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
                reply, bad = _cached_reply(data, requests[i])
                replies[i] = reply if reply is not None and (not bad or writer.reproducible) else None  # None: ask
        missing = [i for i, reply in enumerate(replies) if reply is None]
        meter = progress.Meter("synthesis", len(missing), say="synthesize: writer replies")

        def done(j: int, reply: str) -> None:
            i = missing[j]
            reply = reply if len(reply) <= reply_limit(requests[i]) else OVERSIZED
            bad = malformed(requests[i], reply)
            self.malformed += bad
            record = {"reply": reply, "malformed": bad, **determinants(requests[i], self.writer)}
            self.store.put_bytes(keys_[i], json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
            self.known.add(keys_[i])
            replies[i] = reply
            meter.advance()

        if missing:
            writer.run([requests[i] for i in missing], done)
        return replies, len(missing)


def _cached_reply(data: bytes, r: Request) -> tuple[str | None, bool]:
    """(reply, malformed) of a cache entry, judged again (an older version kept replies unbounded and unmarked);
    (None, True) when the entry is damaged, so the request is asked again."""
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None, True
    reply = record.get("reply") if isinstance(record, dict) else None
    if not isinstance(reply, str):
        return None, True
    return reply, malformed(r, reply)
