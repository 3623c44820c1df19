"""The model side of eval: load base (+ adapter), answer questions in batches, score held-out text.

The base comes from the one loader every stage uses (`jobs.core.loading.load_base`: 4-bit NF4 with the spec's
compute dtype, or unquantised), so the adapter meets exactly the base it was trained on. The adapter is attached
with peft, and `model.disable_adapter()` gives the base model alone from the same weights, so the base answers
cost no second load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from jobs.core.loading import ModelError, load_adapter, load_base, load_tokenizer
from jobs.core.model import resolve_base_model
from jobs.core.spec import BuildSpec

END_OF_TURN = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"  # Qwen's generation_config stops on it too; a base model may emit it instead
MAX_PARAGRAPH_TOKENS = 1024  # longer held-out paragraphs are cut; perplexity is per token either way
NLL_TOKENS_PER_BATCH = 2048  # bounds the logits tensor: 2048 tokens x 152k vocab x 4 bytes = 1.2 GiB


@dataclass(frozen=True)
class Generation:
    text: str
    new_tokens: int  # generated tokens before the stop token (all of them when it never stopped)
    stopped: bool  # ended on <|im_end|> / eos within max_new_tokens


def load_model(spec: BuildSpec, adapter_dir: Path | None, device):
    """(model, tokenizer): the base as the train stage loads it, with the adapter attached when given."""
    base_dir = resolve_base_model(spec)
    tokenizer = load_tokenizer(base_dir)
    if END_OF_TURN not in tokenizer.get_vocab():
        raise ModelError(f"{base_dir}: the tokenizer has no {END_OF_TURN} token to stop answers on "
                         f"(eval expects a Qwen2.5-style chat model)")
    model = load_base(spec, base_dir, device)
    if adapter_dir is not None:
        model = load_adapter(model, adapter_dir)
    model.eval()
    return model, tokenizer


def chat_prompts(tokenizer, questions: Sequence[str], system_prompt: str | None) -> list[str]:
    prompts = []
    for q in questions:
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
        messages.append({"role": "user", "content": q})
        prompts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return prompts


def generate(model, tokenizer, questions: Sequence[str], *, system_prompt: str | None, max_new_tokens: int,
             batch_size: int) -> tuple[list[Generation], dict]:
    """Greedy answers in batches (left padding, prompts sorted by length so a batch pads little).

    Returns the answers in the order of `questions` and timing {seconds, new_tokens, tokens_per_s}."""
    import torch
    from transformers import GenerationConfig

    vocab = tokenizer.get_vocab()
    stop_ids = {vocab[t] for t in (END_OF_TURN, END_OF_TEXT) if t in vocab}
    if tokenizer.eos_token_id is not None:
        stop_ids.add(tokenizer.eos_token_id)
    stop_ids = sorted(stop_ids)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop_ids,
                              pad_token_id=tokenizer.pad_token_id)
    prompts = chat_prompts(tokenizer, questions, system_prompt)
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    tokenizer.padding_side = "left"  # new tokens must follow each prompt directly
    device = next(model.parameters()).device
    results: dict[int, Generation] = {}
    total_new, start = 0, time.perf_counter()
    for b in range(0, len(order), batch_size):
        chunk = order[b:b + batch_size]
        enc = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
        with torch.inference_mode():
            out = model.generate(**enc, generation_config=config)
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        for i, ids in zip(chunk, new):
            end = next((k for k, t in enumerate(ids) if t in stop_ids), None)
            kept = ids if end is None else ids[:end]
            total_new += len(kept)
            results[i] = Generation(text=tokenizer.decode(kept, skip_special_tokens=True).strip(),
                                    new_tokens=len(kept), stopped=end is not None)
    seconds = time.perf_counter() - start
    timing = {"seconds": seconds, "new_tokens": total_new, "tokens_per_s": total_new / max(seconds, 1e-9)}
    return [results[i] for i in range(len(prompts))], timing


def paragraph_nll(model, tokenizer, texts: Sequence[str]) -> list[tuple[float, int]]:
    """(sum of next-token negative log-likelihood in nats, tokens scored) per text, in the order given."""
    import torch
    import torch.nn.functional as F

    tokenizer.padding_side = "right"
    device = next(model.parameters()).device
    encoded = [tokenizer(t, add_special_tokens=False, truncation=True, max_length=MAX_PARAGRAPH_TOKENS)["input_ids"]
               for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    results: dict[int, tuple[float, int]] = {}
    b = 0
    while b < len(order):
        # Grow the batch while the padded size stays within the token budget.
        e = b + 1
        while e < len(order) and (e + 1 - b) * len(encoded[order[e]]) <= NLL_TOKENS_PER_BATCH:
            e += 1
        chunk = order[b:e]
        width = max(len(encoded[i]) for i in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            ids[row, :len(encoded[i])] = torch.tensor(encoded[i], dtype=torch.long)
            mask[row, :len(encoded[i])] = 1
        ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none") * mask[:, 1:]
        for row, i in enumerate(chunk):
            results[i] = (float(nll[row].sum()), int(mask[row, 1:].sum()))
        b = e
    return [results[i] for i in range(len(texts))]
