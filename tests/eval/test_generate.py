"""Generation on the tiny model: batched (left-padded) answers equal one-at-a-time answers; stop handling."""

from __future__ import annotations

import pytest

from jobs.eval import generate

pytestmark = pytest.mark.slow

QUESTIONS = ["What is a quantum kernel?", "Explain depolarizing noise on a NISQ device in a few sentences, please.",
             "Why?", "How does a feature map encode classical data into a Hilbert space?"]


@pytest.fixture(scope="module")
def loaded(eval_spec, adapter_dir):
    return generate.load_model(eval_spec, adapter_dir, "cpu")


def test_chat_prompt_asks_for_the_assistant_turn(loaded):
    _, tok = loaded
    [prompt] = generate.chat_prompts(tok, ["Q?"], "Be brief.")
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert prompt.endswith("<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n")


def test_batched_equals_one_at_a_time(loaded):
    model, tok = loaded
    kw = {"system_prompt": None, "max_new_tokens": 10}
    batched, timing = generate.generate(model, tok, QUESTIONS, batch_size=4, **kw)
    single = [generate.generate(model, tok, [q], batch_size=1, **kw)[0][0] for q in QUESTIONS]
    assert batched == single
    assert timing["new_tokens"] == sum(g.new_tokens for g in batched) and timing["tokens_per_s"] > 0
    for g in batched:
        assert g.new_tokens <= 10 and (g.stopped or g.new_tokens == 10)


def test_adapter_changes_answers_and_disable_adapter_gives_the_base(loaded, eval_spec):
    model, tok = loaded
    kw = {"system_prompt": None, "max_new_tokens": 8, "batch_size": 4}
    with_adapter, _ = generate.generate(model, tok, QUESTIONS, **kw)
    with model.disable_adapter():
        without, _ = generate.generate(model, tok, QUESTIONS, **kw)
        base_nll = generate.paragraph_nll(model, tok, QUESTIONS)
    base_model, _ = generate.load_model(eval_spec, None, "cpu")
    alone, _ = generate.generate(base_model, tok, QUESTIONS, **kw)
    assert without == alone
    assert with_adapter != without
    alone_nll = generate.paragraph_nll(base_model, tok, QUESTIONS)
    assert [n for n, _ in alone_nll] == pytest.approx([n for n, _ in base_nll], rel=1e-4)


def test_paragraph_nll_batched_equals_single(loaded):
    model, tok = loaded
    batched = generate.paragraph_nll(model, tok, QUESTIONS)
    single = [generate.paragraph_nll(model, tok, [q])[0] for q in QUESTIONS]
    assert [t for _, t in batched] == [t for _, t in single]
    assert [n for n, _ in batched] == pytest.approx([n for n, _ in single], rel=1e-4)
    assert all(t == len(tok(q)["input_ids"]) - 1 for q, (_, t) in zip(QUESTIONS, batched))
