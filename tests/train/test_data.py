"""Tokenisation, loss mask, overlong handling, step plan: tokenizer only, no model."""

from __future__ import annotations

import pytest

from jobs.train.data import (IGNORE, DatasetError, check_messages, collate, encode_chat, micro_batches,
                             read_conversations, step_plan, tokenize)
from tests.train.conftest import conversations, write_dataset


def test_mask_is_exactly_the_response_and_end_of_turn(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a Kraus operator?"},
                {"role": "assistant", "content": "A term of a quantum channel's operator-sum form."}]
    ids, labels, eot = encode_chat(messages, tokenizer)
    assert eot == "<|im_end|>"
    trained = [t for t, lab in zip(ids, labels) if lab != IGNORE]
    assert trained == [lab for lab in labels if lab != IGNORE]  # labels are the ids themselves where trained
    assert tokenizer.decode(trained) == messages[-1]["content"] + "<|im_end|>"
    assert trained[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>") and ids[-1] == trained[-1]
    first = labels.index(next(lab for lab in labels if lab != IGNORE))
    assert all(lab == IGNORE for lab in labels[:first]) and all(lab != IGNORE for lab in labels[first:])
    # the prompt is the model's own template up to the generation prompt, as generation will see it
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(ids[:first]) == prompt


def test_every_example_ends_with_end_of_turn_and_overlong_is_counted(tokenizer):
    rows = [(r["id"], r["messages"]) for r in conversations(12, answer_words=(5, 60))]
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    full = tokenize(rows, tokenizer, max_length=4096, overlong="truncate")
    assert not full.truncated and not full.dropped
    assert all(e.input_ids[-1] == eot and e.labels[-1] == eot for e in full.examples)
    lengths = sorted(len(e.input_ids) for e in full.examples)
    limit = lengths[len(lengths) // 2]
    longer = {e.id for e in full.examples if len(e.input_ids) > limit}
    cut = tokenize(rows, tokenizer, max_length=limit, overlong="truncate")
    assert set(cut.truncated) == longer and not cut.dropped and len(cut.examples) == 12
    assert all(len(e.input_ids) <= limit for e in cut.examples)
    dropped = tokenize(rows, tokenizer, max_length=limit, overlong="drop")
    assert set(dropped.dropped) == longer and len(dropped.examples) == 12 - len(longer)
    assert dropped.counts()["dropped"] == len(longer)
    with pytest.raises(DatasetError, match="max_length"):
        tokenize(rows, tokenizer, max_length=4, overlong="drop")


@pytest.mark.parametrize("messages, message", [
    ([{"role": "assistant", "content": "x"}], "roles"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}], "empty"),
    ("not a list", "list"),
])
def test_bad_rows_are_refused_with_the_place(messages, message):
    with pytest.raises(DatasetError, match=message) as err:
        check_messages(messages, "d/train.parquet row ex7")
    assert "row ex7" in str(err.value)


def test_read_conversations_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="jobs.curate"):
        read_conversations(tmp_path)
    write_dataset(tmp_path, [{"id": "a", "messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(DatasetError, match=r"train.parquet row a"):
        read_conversations(tmp_path)
    write_dataset(tmp_path, conversations(3))
    assert [i for i, _ in read_conversations(tmp_path)] == ["ex000", "ex001", "ex002"]


def test_step_plan_is_seeded_and_covers_each_example_once_per_epoch():
    plan = step_plan(10, batch_size=1, grad_accum=4, epochs=2, max_steps=None, seed=3)
    assert [len(s) for s in plan] == [4, 4, 2, 4, 4, 2]
    assert sorted(sum(plan[:3], [])) == list(range(10)) and sorted(sum(plan[3:], [])) == list(range(10))
    assert plan[:3] != plan[3:]  # a new order each epoch
    assert plan == step_plan(10, 1, 4, 2, None, seed=3)
    assert plan != step_plan(10, 1, 4, 2, None, seed=4)
    # max_steps is the exact number of optimizer steps: epochs are cut or repeated to reach it
    assert step_plan(10, 1, 4, 1, max_steps=5, seed=3) == plan[:5]
    assert len(step_plan(10, 1, 4, 1, max_steps=2, seed=3)) == 2
    assert micro_batches([7, 8, 9, 1, 2], 2) == [[7, 8], [9, 1], [2]]


def test_collate_pads_right_and_masks_pads(tokenizer):
    rows = [(r["id"], r["messages"]) for r in conversations(2, answer_words=(3, 40))]
    ex = tokenize(rows, tokenizer, 4096, "truncate").examples
    batch = collate(ex, pad_id=0)
    short = min(range(2), key=lambda i: len(ex[i].input_ids))
    n = len(ex[short].input_ids)
    assert batch["input_ids"].shape[1] == max(len(e.input_ids) for e in ex)
    assert batch["attention_mask"][short, :n].all() and not batch["attention_mask"][short, n:].any()
    assert (batch["labels"][short, n:] == IGNORE).all()
