"""The generation engine: exact against plain transformers generate + peft, the fast path against the exact one,
streaming, adapter switching, stops, sampling seeds, NLL, and the refusals. Tiny model, float32, CPU."""

from __future__ import annotations

import dataclasses

import pytest

from jobs.core.engine.generation import (Engine, EngineError, EngineSettings, Sampling, agreement, finish, held_back,
                                        stop_at)

QUESTIONS = ["What is a quantum kernel?", "Explain depolarizing noise on a NISQ device in a few sentences, please.",
             "Why?", "How does a feature map encode classical data into a Hilbert space?"]
CHATS = [[{"role": "user", "content": q}] for q in QUESTIONS]


class Chars:
    """A tokenizer whose token i is the character chr(i)."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


def test_finish_cuts_at_the_stop_token_or_the_first_stop_string():
    ids = [ord(c) for c in "  answer. STOP more"]
    g = finish(Chars(), ids + [0, 65], [0], ())
    assert (g.text, g.new_tokens, g.stopped, g.finish_reason) == ("answer. STOP more", len(ids), True, "stop")
    g = finish(Chars(), ids, [0], ("STOP", "more"))
    assert (g.text, g.new_tokens, g.stopped, g.finish_reason) == ("answer.", 10, True, "stop")
    g = finish(Chars(), ids, [0], ("never",))
    assert (g.stopped, g.finish_reason, g.new_tokens) == (False, "length", len(ids))


def test_stop_strings_and_what_a_stream_holds_back():
    assert stop_at("a STOP b END", ("END", "STOP")) == 2 and stop_at("abc", ("x", "")) is None
    assert held_back("text ST", ("STOP",)) == 2  # "ST" may become "STOP"
    assert held_back("text S", ("STOP", "SO")) == 1
    assert held_back("caf\ufffd", ()) == 1  # half a UTF-8 character
    assert held_back("text", ("STOP",)) == 0


@pytest.mark.parametrize("bad", [{"max_new_tokens": 0}, {"temperature": -1.0}, {"top_p": 0.0},
                                 {"min_new_tokens": 300}])
def test_bad_sampling_is_refused(bad):
    with pytest.raises(EngineError, match="sampling"):
        Sampling(**bad)


# --- the tiny model (slow tier) ---------------------------------------------------------------------------------

def _spec(smoke_spec, quantization="nf4"):
    return dataclasses.replace(smoke_spec, train=dataclasses.replace(smoke_spec.train, quantization=quantization))


CPU = EngineSettings(device="cpu")


@pytest.fixture(scope="module")
def exact(smoke_spec, tiny_adapter):
    return Engine.load(smoke_spec, {"a": tiny_adapter}, CPU)


@pytest.fixture(scope="module")
def fast(smoke_spec, tiny_adapter):
    return Engine.load(smoke_spec, {"a": tiny_adapter}, dataclasses.replace(CPU, fast=True))


@pytest.mark.slow
def test_paths_and_prompts(exact, fast):
    assert exact.path == "cpu-exact" and "reference" in exact.path_note
    assert fast.path == "cpu-fast" and "dequantized" in fast.path_note
    assert exact.adapters == ("a",) and exact.compile_seconds == 0.0
    [ids] = exact.prompt_ids([[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}]])
    prompt = exact.tokenizer.decode(ids)
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert prompt.endswith("<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.slow
def test_greedy_equals_plain_generate_with_peft_at_every_batch_size(smoke_spec, tiny_adapter, tiny_model, exact):
    import torch

    from jobs.core.engine.loading import load_adapter, load_base

    model = load_adapter(load_base(smoke_spec, tiny_model, torch.device("cpu")), tiny_adapter, "a").eval()
    prompts = exact.prompt_ids(CHATS)
    stop_ids = exact._stop_ids

    def plain(prompt):  # one prompt at a time: no padding
        out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                             eos_token_id=stop_ids, pad_token_id=exact.tokenizer.pad_token_id)
        new = out[0, len(prompt):].tolist()
        return new[:next((k + 1 for k, t in enumerate(new) if t in stop_ids), len(new))]

    with torch.inference_mode():
        reference = {"a": [plain(p) for p in prompts]}
        with model.disable_adapter():
            reference[None] = [plain(p) for p in prompts]
    assert reference["a"] != reference[None]
    engines = [exact] + [Engine.load(smoke_spec, {"a": tiny_adapter}, dataclasses.replace(CPU, batch_size=b))
                         for b in (1, 3)]
    for engine in engines:
        for adapter in ("a", None):
            assert engine.complete_ids(prompts, adapter, Sampling(max_new_tokens=12)) == reference[adapter]


@pytest.mark.slow
def test_fast_path_equals_transformers_on_the_same_weights(smoke_spec, tiny_adapter):
    """Unquantized float32 weights: the hand-written decoder and transformers compute the same function."""
    import torch

    spec = _spec(smoke_spec, quantization="none")
    exact, fast = (Engine.load(spec, {"a": tiny_adapter}, dataclasses.replace(CPU, fast=f)) for f in (False, True))
    prompts = exact.prompt_ids(CHATS)
    for adapter in ("a", None):
        sampling = Sampling(max_new_tokens=12)
        assert fast.complete_ids(prompts, adapter, sampling) == exact.complete_ids(prompts, adapter, sampling)
        got, want = fast.nll(QUESTIONS, adapter), exact.nll(QUESTIONS, adapter)
        assert [t for _, t in got] == [t for _, t in want]
        assert [n for n, _ in got] == pytest.approx([n for n, _ in want], rel=1e-5)
        tokens, logits = fast.trace(CHATS, adapter, 4)
        _, reference = exact.trace(CHATS, adapter, 4, forced=tokens)
        for got, ref in zip(logits, reference):
            assert (got - ref).abs().max() < 1e-4


@pytest.mark.slow
def test_fast_path_logits_agree_with_the_4bit_path(exact, fast):
    """NF4: the fast path multiplies by the dequantized weights. On this CPU bitsandbytes repacks the 4-bit weights
    with bfloat16 block scales (AVX512-BF16), so the reference itself moves by about 1e-3 relative."""
    import torch

    for adapter in ("a", None):
        found = agreement(fast.trace(CHATS, adapter, 4), exact, CHATS, adapter)
        assert found["steps"] == 4 * len(CHATS) and found["max_rel_l2"] < 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("path", ["exact", "fast"])
def test_stream_equals_chat(path, request):
    engine = request.getfixturevalue(path)
    for adapter in ("a", None):
        sampling = Sampling(max_new_tokens=10)
        answers = engine.chat(CHATS[:2], adapter, sampling)
        for chat, answer in zip(CHATS, answers):
            chunks = list(engine.stream(chat, adapter, sampling))
            assert [c.generation is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
            assert chunks[-1].generation == answer
            assert "".join(c.text for c in chunks).strip() == answer.text


@pytest.mark.slow
@pytest.mark.parametrize("path", ["exact", "fast"])
def test_stop_strings_end_answers_and_streams(path, request, monkeypatch, smoke_spec):
    """Rows end at different steps; on the fast path the finished rows leave the batch (compaction) and the others
    carry on with their own cache rows: every answer is its unstopped answer cut at the first stop string."""
    from jobs.core.engine import fastgen
    from jobs.core.spec.suite import load_suite

    engine = request.getfixturevalue(path)
    compactions, compact = [], fastgen.Session.compact

    def spy(session, keep):
        compactions.append(len(keep))
        compact(session, keep)

    monkeypatch.setattr(fastgen.Session, "compact", spy)
    chats = [[{"role": "user", "content": q.question}] for q in load_suite(smoke_spec.eval.suite).questions]
    free = engine.complete_ids(engine.prompt_ids(chats), "a", Sampling(max_new_tokens=24))
    texts = [engine.tokenizer.decode(ids, skip_special_tokens=True) for ids in free]
    stops = ("device", "ro", "88", " K")
    assert 0 < sum(stop_at(t, stops) is not None for t in texts) < len(texts)
    stopped = engine.chat(chats, "a", Sampling(max_new_tokens=24, stop=stops))
    assert stopped == [finish(engine.tokenizer, ids, engine._stop_ids, stops) for ids in free]
    assert any(g.finish_reason == "stop" for g in stopped) and any(g.finish_reason == "length" for g in stopped)
    if path == "fast":
        assert compactions  # some rows finished, and the batch shrank
    i = next(k for k, t in enumerate(texts) if stop_at(t, stops))
    chunks = list(engine.stream(chats[i], "a", Sampling(max_new_tokens=24, stop=stops)))
    assert chunks[-1].generation == stopped[i]
    assert not any(s in "".join(c.text for c in chunks) for s in stops)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["exact", "fast"])
def test_sampling_is_seeded(path, request):
    engine = request.getfixturevalue(path)
    hot = Sampling(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=7)
    first = engine.chat(CHATS, "a", hot)
    assert engine.chat(CHATS, "a", hot) == first
    assert engine.chat(CHATS, "a", dataclasses.replace(hot, seed=8)) != first
    streamed = [c.generation for c in engine.stream(CHATS[0], "a", hot)][-1]
    assert streamed == [c.generation for c in engine.stream(CHATS[0], "a", hot)][-1]


@pytest.mark.slow
def test_switching_adapters_restores_the_base_exactly(smoke_spec, tiny_adapter, fast):
    alone = Engine.load(smoke_spec, None, dataclasses.replace(CPU, fast=True))
    base_nll = alone.nll(QUESTIONS, None)
    base_ids = alone.complete_ids(alone.prompt_ids(CHATS), None, Sampling(max_new_tokens=8))
    with_adapter = fast.nll(QUESTIONS, "a")
    assert fast.nll(QUESTIONS, None) == base_nll  # bit for bit: the base's rows were kept, not un-merged
    assert fast.complete_ids(fast.prompt_ids(CHATS), None, Sampling(max_new_tokens=8)) == base_ids
    assert fast.nll(QUESTIONS, "a") == with_adapter != base_nll


@pytest.mark.slow
@pytest.mark.parametrize("path", ["exact", "fast"])
def test_nll_batched_equals_one_at_a_time(path, request):
    engine = request.getfixturevalue(path)
    batched = engine.nll(QUESTIONS, "a")
    single = [engine.nll([q], "a")[0] for q in QUESTIONS]
    assert [t for _, t in batched] == [t for _, t in single]
    assert [n for n, _ in batched] == pytest.approx([n for n, _ in single], rel=1e-4)
    assert all(t == len(engine.tokenizer(q)["input_ids"]) - 1 for q, (_, t) in zip(QUESTIONS, batched))


@pytest.mark.slow
def test_refusals_name_the_problem(exact):
    with pytest.raises(EngineError, match=r"conversation 0 \('What is a quantum kernel\?'.*context of 2048"):
        exact.chat(CHATS, "a", Sampling(max_new_tokens=2040))
    with pytest.raises(EngineError, match="conversation 0 .*shorten"):
        next(exact.stream(CHATS[0], None, Sampling(max_new_tokens=2040)))
    with pytest.raises(EngineError, match="adapter 'b' is not loaded"):
        exact.chat(CHATS, "b", Sampling())
    assert exact.chat([], "a", Sampling()) == []
