"""What both generation paths (jobs/core/engine/exactgen.py, jobs/core/engine/fastgen.py) decode with: the sampling
rule, the seeded generator, and held-out perplexity's length-sorted batches and per-token NLL. Imports torch at the
top: only the path modules import it.
"""

from __future__ import annotations

from typing import Iterator

import torch

NLL_TOKENS_PER_BATCH = 1024  # bounds the logits: 1,024 tokens x 152k vocabulary x 4 bytes = 0.6 GiB


def pick(logits, sampling, step: int, stops, generator):
    """Next token per row from float32 logits (B, V): greedy, or temperature + top-p sampling."""
    if step < sampling.min_new_tokens:
        logits = logits.index_fill(1, stops, float("-inf"))
    if sampling.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1:
        ranked, index = probs.sort(dim=-1, descending=True)
        ranked = ranked.masked_fill(ranked.cumsum(-1) - ranked > sampling.top_p, 0)
        return index.gather(-1, torch.multinomial(ranked, 1, generator=generator)).squeeze(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def token_nll(logits, targets):
    """Next-token NLL per position, (B, T), of float32 logits (B, T, V) against targets (B, T). The cross-entropy
    runs over rows with the vocabulary contiguous: over a transposed (B, V, T) view torch takes a strided softmax
    across Qwen's 151,936 words (3.4-3.6x slower on the CPU: docs/benchmarks.md, synthesis speed); the values agree to
    float32 rounding."""
    rows, width, vocab = logits.shape
    return torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1),
                                             reduction="none").view(rows, width)


def token_batches(order: list[int], encoded: list[list[int]], budget: int) -> Iterator[list[int]]:
    """Consecutive runs of `order` (sorted by length) whose padded size stays within `budget` tokens."""
    b = 0
    while b < len(order):
        e = b + 1
        while e < len(order) and (e + 1 - b) * len(encoded[order[e]]) <= budget:
            e += 1
        yield order[b:e]
        b = e


def generator_for(seed: int | None, device):
    return None if seed is None else torch.Generator(device=device).manual_seed(seed)
