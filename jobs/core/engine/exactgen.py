"""The exact generation path (engine.path "cpu-exact" / "gpu-nf4"): transformers' own generate over the base as
trained (4-bit NF4 or plain) with the adapters attached by peft. The reference every other path is judged against:
greedy answers equal plain `generate` with peft token for token at every batch size. Only jobs.core.engine imports
this module.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from jobs.core.engine.decoding import NLL_TOKENS_PER_BATCH, generator_for, pick, token_batches, token_nll


class ExactBackend:
    """transformers' generate over the loaded (peft) model: the cpu-exact and gpu-nf4 paths."""

    compile_seconds = 0.0

    def __init__(self, model, tokenizer, batch_size: int):
        self.model, self.batch_size = model, batch_size
        self.pad_id = tokenizer.pad_token_id
        self.device = next(model.parameters()).device

    def trace(self, prompts, adapter, sampling, stop_ids, tokenizer, forced=None):
        """Greedy, exactly sampling.max_new_tokens tokens (or the `forced` ones: another path's, to compare at the
        same positions); each step's logits from one teacher-forced forward over the prompt and those tokens."""
        tokens = forced or self.generate(prompts, adapter, sampling, stop_ids, tokenizer)
        logits = []
        with self._use(adapter), torch.inference_mode():
            for prompt, new in zip(prompts, tokens):
                ids = torch.tensor([prompt + new[:-1]], device=self.device)
                logits.append(self.model(input_ids=ids).logits[0, len(prompt) - 1:].float().cpu())
        return tokens, logits

    def _use(self, adapter: str | None):
        """The adapter switched on, or (None) every adapter switched off for the base alone."""
        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            return contextlib.nullcontext()
        if adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(adapter)
        return contextlib.nullcontext()

    def generate(self, prompts: list[list[int]], adapter, sampling, stop_ids, tokenizer) -> list[list[int]]:
        """New token ids per prompt (to the first stop token or max_new_tokens), batches of prompts sorted by length."""
        from transformers import GenerationConfig

        # Every knob set, so the checkpoint's generation_config.json (Qwen's repetition penalty, top_k) adds nothing.
        config = GenerationConfig(max_new_tokens=sampling.max_new_tokens, min_new_tokens=sampling.min_new_tokens,
                                  do_sample=sampling.temperature > 0, temperature=sampling.temperature or 1.0,
                                  top_p=sampling.top_p, top_k=0 if sampling.temperature > 0 else None,
                                  repetition_penalty=1.0, eos_token_id=stop_ids,
                                  pad_token_id=self.pad_id, stop_strings=list(sampling.stop) or None)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: dict[int, list[int]] = {}
        with self._use(adapter), torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                chunk = order[b:b + self.batch_size]
                width = max(len(prompts[i]) for i in chunk)
                ids = torch.tensor([[self.pad_id] * (width - len(prompts[i])) + prompts[i] for i in chunk])
                mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in chunk])
                out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                          generation_config=config, tokenizer=tokenizer)
                for i, new in zip(chunk, out[:, width:].tolist()):
                    results[i] = new
        return [results[i] for i in range(len(prompts))]

    def stream(self, prompt: list[int], adapter, sampling, stop_ids) -> Iterator[int]:
        """Token ids one at a time: the model's forward with its cache, one token per step (what generate does)."""
        generator = generator_for(sampling.seed, self.device)
        stops = torch.tensor(stop_ids, dtype=torch.long, device=self.device)
        with self._use(adapter):  # stays on while the stream is suspended: one call at a time (engine docstring)
            ids, past = torch.tensor([prompt], device=self.device), None
            for step in range(sampling.max_new_tokens):
                with torch.inference_mode():  # per step, so the reader's own code between tokens runs normally
                    out = self.model(input_ids=ids, past_key_values=past, use_cache=True, logits_to_keep=1)
                    past = out.past_key_values
                    token = pick(out.logits[:, -1].float(), sampling, step, stops, generator)
                yield int(token)
                ids = token.view(1, 1)

    def decoder(self, rows: int, tokens: int, stop_ids: list[int]) -> "ExactDecoder":
        return ExactDecoder(self, rows, tokens, stop_ids)

    def nll(self, encoded: list[list[int]], adapter, pad_id: int) -> list[tuple[float, int]]:
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        results: dict[int, tuple[float, int]] = {}
        with self._use(adapter), torch.inference_mode():
            for chunk in token_batches(order, encoded, NLL_TOKENS_PER_BATCH):
                width = max(len(encoded[i]) for i in chunk)
                ids = torch.tensor([encoded[i] + [pad_id] * (width - len(encoded[i])) for i in chunk])
                mask = torch.tensor([[1] * len(encoded[i]) + [0] * (width - len(encoded[i])) for i in chunk])
                ids, mask = ids.to(self.device), mask.to(self.device)
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                nll = token_nll(logits, ids[:, 1:]) * mask[:, 1:]
                for row, i in enumerate(chunk):
                    results[i] = (float(nll[row].sum()), int(mask[row, 1:].sum()))
        return [results[i] for i in range(len(encoded))]



class ExactDecoder:
    """Continuous batching's interface (jobs/core/engine/fastbatch.py) on the reference path: each row runs its own
    forward with its own cache and adapter, one row after another. Not faster than one request at a time; it
    keeps the server's single code path on the exact engine and is what the fast decoder is checked against."""

    mode = "per-row forward (exact path)"

    def __init__(self, backend: ExactBackend, rows: int, length: int, stop_ids: list[int]):
        self.b, self.rows, self.length = backend, rows, length  # length: prompt + answer tokens a row may hold
        self.stops = torch.tensor(stop_ids, dtype=torch.long, device=backend.device)
        self.live: dict[int, dict] = {}
        self.ids = iter(range(1 << 62))

    def free(self) -> int:
        return self.rows - len(self.live)

    def busy(self) -> bool:
        return bool(self.live)

    def add(self, prompt: list[int], adapter, sampling) -> int:
        rid = next(self.ids)
        self.live[rid] = {"ids": prompt, "past": None, "adapter": adapter, "sampling": sampling, "emitted": 0,
                          "generator": generator_for(sampling.seed, self.b.device)}
        return rid

    def drop(self, rid: int) -> None:
        self.live.pop(rid, None)

    def step(self) -> list[tuple[int, int]]:
        out = []
        for rid, row in list(self.live.items()):
            with self.b._use(row["adapter"]), torch.inference_mode():
                ids = torch.tensor([row["ids"]], device=self.b.device)
                result = self.b.model(input_ids=ids, past_key_values=row["past"], use_cache=True, logits_to_keep=1)
                token = int(pick(result.logits[:, -1].float(), row["sampling"], row["emitted"], self.stops,
                                 row["generator"]))
            row.update(past=result.past_key_values, ids=[token], emitted=row["emitted"] + 1)
            out.append((rid, token))
            if row["emitted"] >= row["sampling"].max_new_tokens:
                self.drop(rid)
        return out
