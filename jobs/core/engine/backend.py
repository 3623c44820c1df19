"""The interface every generation path implements (exactgen.ExactBackend, fastgen.FastBackend): what Engine
calls, written down once. Token ids in, token ids out; the Engine does the chat template, stops and text.
"""

from __future__ import annotations

from typing import Iterator, Protocol


class Backend(Protocol):
    compile_seconds: float  # spent compiling and capturing graphs so far (0 for a path that compiles nothing)

    def generate(self, prompts: list[list[int]], adapter: str | None, sampling, stop_ids: list[int],
                 tokenizer) -> list[list[int]]:
        """New token ids per prompt (to its first stop token, or max_new_tokens), in input order."""

    def stream(self, prompt: list[int], adapter: str | None, sampling, stop_ids: list[int]) -> Iterator[int]:
        """New token ids of one prompt, one at a time; closing the iterator ends the generation."""

    def nll(self, encoded: list[list[int]], adapter: str | None, pad_id: int) -> list[tuple[float, int]]:
        """(summed negative log-likelihood in nats, scored tokens) per text."""

    def trace(self, prompts: list[list[int]], adapter: str | None, sampling, stop_ids: list[int], tokenizer,
              forced: list[list[int]] | None = None) -> tuple[list[list[int]], list]:
        """Greedy with exactly sampling.max_new_tokens (= min_new_tokens) steps: the new token ids per prompt and
        their float32 logits (a steps x vocab tensor per prompt, on the CPU): what agreement checks compare.
        `forced`: the reference (exact) path scores these tokens instead of choosing its own."""
