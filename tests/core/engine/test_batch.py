"""Continuous batching (jobs/core/engine/batch.py over fastbatch / exactgen's decoders): requests joining mid-way answer as
they do alone, greedy as the exact path does, seeded samples independent of their neighbours, mixed adapters in one
step as each adapter alone. Tiny model, float32, CPU (the fast path runs eagerly here, without graphs)."""

from __future__ import annotations

import pytest
import torch

from jobs.core.engine.batch import open_batch
from jobs.core.engine.generation import Engine, EngineSettings, Sampling

QUESTIONS = ["What is a quantum kernel?", "Explain depolarizing noise on a NISQ device in a few sentences, please.",
             "Why?", "How does a feature map encode classical data into a Hilbert space?"]
CHATS = [[{"role": "user", "content": q}] for q in QUESTIONS]
GREEDY = Sampling(max_new_tokens=12)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def second_adapter(tiny_model, tmp_path_factory):
    """Another rank and other targets than tiny_adapter (MLP too), so the stacked per-row LoRA has mixed shapes."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"],
                      init_lora_weights=False, task_type="CAUSAL_LM")
    out = tmp_path_factory.mktemp("second-adapter")
    get_peft_model(base, lora).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def fast(smoke_spec, tiny_adapter, second_adapter):
    return Engine.load(smoke_spec, {"a": tiny_adapter, "b": second_adapter}, EngineSettings(device="cpu", fast=True))


@pytest.fixture(scope="module")
def exact(smoke_spec, tiny_adapter, second_adapter):
    return Engine.load(smoke_spec, {"a": tiny_adapter, "b": second_adapter}, EngineSettings(device="cpu", fast=False))


def run(engine, requests, rows=8, join_after=0):
    """{key: (chunks joined, Generation)} for requests [(key, chat, adapter, sampling)]; the first half joins at
    once, the rest `join_after` steps later (mid-answer of the others), each as a row frees up."""
    batch = open_batch(engine, rows, 256)
    queue, out, steps = list(requests), {}, 0
    early = len(requests) // 2 if join_after else len(requests)
    while queue or batch.busy():
        while queue and batch.free() and (len(requests) - len(queue) < early or steps >= join_after):
            key, chat, adapter, sampling = queue.pop(0)
            assert batch.add(key, chat, adapter, sampling)
        for key, chunk in batch.step():
            text, _ = out.get(key, ("", None))
            out[key] = (text + chunk.text, chunk.generation)
        steps += 1
        assert steps < 500
    return out


def test_greedy_answers_joining_mid_way_equal_the_exact_path(fast, exact):
    requests = [(i, CHATS[i], "a", GREEDY) for i in range(4)]
    expected = [g.text for g in exact.chat(CHATS, "a", GREEDY)]
    for engine in (fast, exact):
        got = run(engine, requests, rows=3, join_after=4)  # 3 rows for 4 requests: the last waits for a free row
        assert [got[i][1].text for i in range(4)] == expected
        assert [got[i][0].strip() for i in range(4)] == expected  # the chunks join to the answer


def test_mixed_adapters_in_one_batch_equal_each_adapter_alone(fast):
    alone = {a: [g.text for g in fast.chat(CHATS, a, GREEDY)] for a in ("a", "b", None)}
    assert alone["a"] != alone["b"] != alone[None]  # three different models: a mix-up would show
    requests = [((i, a), CHATS[i], a, GREEDY) for i in range(4) for a in ("a", "b", None)]
    batch = open_batch(fast, 16, 256)
    for key, chat, adapter, sampling in requests:
        batch.add(key, chat, adapter, sampling)
    got, modes = {}, set()
    while batch.busy():
        got.update((key, c.generation.text) for key, c in batch.step() if c.generation)
        modes.add(batch.mode)
    assert "per-row LoRA" in modes
    assert got == {(i, a): alone[a][i] for i in range(4) for a in ("a", "b", None)}


def test_a_seeded_sample_is_the_same_alone_and_batched(fast, exact):
    seeded = Sampling(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    for engine in (fast, exact):
        alone = run(engine, [("s", CHATS[0], "a", seeded)])["s"][1].text
        others = [(i, CHATS[i % 4], ("a", "b")[i % 2], Sampling(max_new_tokens=12, temperature=0.8, seed=i))
                  for i in range(5)]
        batched = run(engine, others[:2] + [("s", CHATS[0], "a", seeded)] + others[2:], join_after=2)
        assert batched["s"][1].text == alone


def test_stop_strings_and_lengths_end_rows_independently(fast):
    [full] = [g.text for g in fast.chat(CHATS[:1], "b", GREEDY)]
    cut = next(ch for ch in full[3:] if not ch.isspace())
    requests = [("stop", CHATS[0], "b", Sampling(max_new_tokens=12, stop=(cut,))),
                ("short", CHATS[0], "b", Sampling(max_new_tokens=3)), ("full", CHATS[0], "b", GREEDY)]
    got = run(fast, requests)
    assert got["stop"][1].finish_reason == "stop" and full.startswith(got["stop"][1].text)
    assert cut not in got["stop"][1].text
    assert got["short"][1].new_tokens == 3 and got["short"][1].finish_reason == "length"
    assert got["full"][1].text == full


def test_a_dropped_row_frees_its_place_at_once(fast):
    batch = open_batch(fast, 2, 256)
    assert batch.add("long", CHATS[1], "a", Sampling(max_new_tokens=150))
    assert batch.add("other", CHATS[0], "a", GREEDY)
    batch.step()
    assert batch.free() == 0
    batch.drop("long")
    assert batch.free() == 1
    batch.add("next", CHATS[2], "b", GREEDY)
    got = {}
    while batch.busy():
        got.update((key, c.generation.text) for key, c in batch.step() if c.generation)
    assert "long" not in got
    assert got["next"] == fast.chat(CHATS[2:3], "b", GREEDY)[0].text
    assert got["other"] == fast.chat(CHATS[:1], "a", GREEDY)[0].text


def test_a_request_longer_than_the_batch_is_handed_back(fast):
    batch = open_batch(fast, 4, 64)
    assert not batch.add("long", CHATS[0], "a", Sampling(max_new_tokens=300))
    assert batch.add("fits", CHATS[0], "a", Sampling(max_new_tokens=4))
