"""Training examples: chat-template tokenisation with a loss mask, overlong handling, a seeded step plan.

Supervision for an Instruct model: the prompt is the model's own chat template up to the generation prompt
(`<|im_start|>assistant\\n` for Qwen2.5); the labels are the assistant response followed by the template's
end-of-turn token (`<|im_end|>`), so the trained model learns to stop. Everything else is masked (-100).
No torch at import time: the tokenizer and the plan are plain Python.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from jobs.core.store.dataset_folder import DatasetError, read_table

IGNORE = -100  # label of a token that is not trained on (torch cross_entropy's ignore_index)
# A packed row's attention grid is this many tokens wide, or a multiple (jobs/train/packing.py): on the H200, sdpa
# ran cuDNN's attention, whose host side took 2.2 ms a call on average (31 % of a v1 step's CPU time) while every
# step brought a new width; a step of the same shape took 0.29 s for 4,096 tokens against 0.46 s for 2,614.
# Rounded up to 128, v1 (max_length 1,024) has at most 8 widths; the padding adds under 0.5 % of the FLOPs.
GRID_WIDTH_STEP = 128


@dataclass
class Example:
    id: str
    input_ids: list[int]
    labels: list[int]  # same length as input_ids; IGNORE outside the assistant response + end-of-turn

    @property
    def label_tokens(self) -> int:
        """Tokens the loss is taken on. Token t is predicted from t-1, so a label on the first position is
        never trained (none has one: a prompt comes first)."""
        return sum(1 for t in self.labels[1:] if t != IGNORE)


@dataclass
class Tokenized:
    examples: list[Example]
    rows: int  # rows read from train.parquet
    truncated: list[str] = field(default_factory=list)  # ids cut to max_length (their end-of-turn is lost)
    dropped: list[str] = field(default_factory=list)  # ids left out: too long (overlong: drop) or no response left
    end_of_turn: str = ""

    def counts(self) -> dict:
        return {"rows": self.rows, "examples": len(self.examples), "truncated": len(self.truncated),
                "dropped": len(self.dropped), "end_of_turn_token": self.end_of_turn,
                "tokens": sum(len(e.input_ids) for e in self.examples),
                "label_tokens": sum(e.label_tokens for e in self.examples)}


def read_conversations(dataset_dir: str | Path) -> list[tuple[str, list[dict]]]:
    """(id, messages) for every row of DATASET_DIR/train.parquet, in file order."""
    path = Path(dataset_dir) / "train.parquet"
    rows = [(str(r["id"]), r["messages"]) for r in read_table(dataset_dir, "train.parquet", ["id", "messages"])]
    if not rows:
        raise DatasetError(f"{path} has no rows: curation selected nothing; check curate.keywords and sources")
    for row_id, messages in rows:
        check_messages(messages, f"{path} row {row_id}")
    return rows


def check_messages(messages, where: str) -> None:
    """An optional system message, then user, then assistant; every content a string."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise DatasetError(f"{where}: messages must be a list of {{role, content}}, got {messages!r:.200}")
    roles = [m.get("role") for m in messages]
    if roles not in (["user", "assistant"], ["system", "user", "assistant"]):
        raise DatasetError(f"{where}: roles {roles} are not [system,] user, assistant; "
                           f"each example is one question and its answer")
    for m in messages:
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            raise DatasetError(f"{where}: the {m.get('role')} message has empty or non-text content")


def encode_chat(messages: list[dict], tokenizer) -> tuple[list[int], list[int], str]:
    """input_ids, labels and the end-of-turn token text for one conversation whose last turn is the assistant's.

    ids = template(prompt, generation prompt) + response + end-of-turn. The response is tokenised on its own,
    as generation produces it after the prompt; the rendered full chat must agree, or the template is refused.
    """
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    response = messages[-1]["content"]
    if not full.startswith(prompt + response):
        raise DatasetError("the tokenizer's chat template does not put the assistant response right after the "
                           "generation prompt; use the base model's own template (tokenizer_config.json)")
    rest = tokenizer.encode(full[len(prompt + response):], add_special_tokens=False)
    if not rest or rest[0] not in tokenizer.all_special_ids:
        raise DatasetError("the tokenizer's chat template ends an assistant turn without a special end-of-turn "
                           "token, so a trained model would not learn to stop; use a template like Qwen2.5's")
    end_of_turn = rest[0]
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    response_ids = tokenizer.encode(response, add_special_tokens=False) + [end_of_turn]
    labels = [IGNORE] * len(prompt_ids) + response_ids
    return prompt_ids + response_ids, labels, tokenizer.convert_ids_to_tokens(end_of_turn)


def tokenize(rows: list[tuple[str, list[dict]]], tokenizer, max_length: int, overlong: str) -> Tokenized:
    """Encode every row; longer than max_length tokens: 'truncate' keeps the first max_length, 'drop' skips."""
    out = Tokenized(examples=[], rows=len(rows))
    for row_id, messages in rows:
        ids, labels, out.end_of_turn = encode_chat(messages, tokenizer)
        if len(ids) > max_length:
            if overlong == "drop":
                out.dropped.append(row_id)
                continue
            ids, labels = ids[:max_length], labels[:max_length]
            if all(t == IGNORE for t in labels):  # the prompt alone fills max_length: nothing to learn
                out.dropped.append(row_id)
                continue
            out.truncated.append(row_id)
        out.examples.append(Example(row_id, ids, labels))
    if not out.examples:
        raise DatasetError(f"all {len(rows)} examples are longer than train.max_length={max_length} tokens "
                           f"(overlong: {overlong}); raise train.max_length or use overlong: truncate")
    return out


def step_plan(n_examples: int, batch_size: int, grad_accum: int, epochs: int, max_steps: int | None,
              seed: int) -> list[list[int]]:
    """Example indices of every optimizer step: each epoch a seeded permutation cut into groups of
    batch_size x grad_accum (the last group of an epoch may be smaller). max_steps, when set, is the exact
    number of steps: epochs are cut short or repeated (new permutations) to reach it."""
    per_step = batch_size * grad_accum
    steps: list[list[int]] = []
    epoch = 0
    while (max_steps is None and epoch < epochs) or (max_steps is not None and len(steps) < max_steps):
        order = list(range(n_examples))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        steps.extend(order[i:i + per_step] for i in range(0, n_examples, per_step))
        epoch += 1
    return steps[:max_steps] if max_steps is not None else steps


def micro_batches(step: list, micro_batch_size: int) -> list[list]:
    return [step[i:i + micro_batch_size] for i in range(0, len(step), micro_batch_size)]


class Packed(NamedTuple):
    """Where each token of a packed row sits when the row is cut back into one row per example: token i of
    the row goes to slot `slots[i]` of a [rows x width] grid (example r's tokens at r*width + 0..len-1)."""

    slots: object  # torch.LongTensor [tokens]
    rows: int  # examples in the row
    width: int  # tokens of the longest of them, rounded up to a multiple of GRID_WIDTH_STEP
    starts: object  # torch.IntTensor [rows + 1]: where each example starts in the row, then the row's length


def pack(examples: list[Example]) -> dict:
    """One row of the micro-batch's examples end to end, no padding: input_ids, labels, position_ids (0 at
    each example's start, so RoPE sees each example as it would alone) and the Packed layout that keeps
    attention inside each example (jobs/train/packing.py).

    An example's first label is IGNORE: in the row, the token before it is the previous example's last one,
    and it must not learn to predict across the boundary (a first position never carries a label anyway)."""
    import torch

    lengths = [len(e.input_ids) for e in examples]
    width = -(-max(lengths) // GRID_WIDTH_STEP) * GRID_WIDTH_STEP  # few shapes (GRID_WIDTH_STEP says why)
    # Built with whole-tensor operations. Per-token Python loops took 13 to 16 ms for 32 examples (20,000 tokens) on
    # the 2-core CI machine (1.3 ms now), and on an H100 the GPU sat idle 12.6 ms at the start of every step while
    # the host built the row (bench/stepprofile.py's idle report, docs/benchmarks.md).
    n = torch.tensor(lengths)
    starts = torch.cat([n.new_zeros(1), n.cumsum(0)])
    ids = _flat([e.input_ids for e in examples])
    labels = _flat([e.labels for e in examples])
    labels[starts[:-1]] = IGNORE
    row = torch.repeat_interleave(torch.arange(len(examples)), n)
    positions = torch.arange(len(ids)) - starts[:-1][row]
    return {"input_ids": ids[None], "labels": labels[None], "position_ids": positions[None],
            "packed": Packed(row * width + positions, len(examples), width, starts.to(torch.int32))}


def _flat(lists: list[list[int]]):
    """The lists end to end as one int64 tensor, through numpy: torch.tensor of a 20,000-int list takes 2.6 ms,
    numpy 0.3."""
    import numpy as np
    import torch

    return torch.from_numpy(np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64,
                                        count=sum(map(len, lists))))


def collate(examples: list[Example], pad_id: int):
    """Right-padded tensors input_ids, attention_mask, labels (pads masked) for one micro-batch."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
