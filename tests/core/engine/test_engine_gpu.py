"""The gpu tier, generation: at Qwen2.5-1.5B's shape on a CUDA GPU, the engine takes the path the docs say (and says
why), the fast path's logits agree with the 4-bit path's, and generation as eval and synthesis run it stays inside
train.memory_budget_gib. `make test-gpu` runs the tier (skipped where torch sees no GPU)."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from jobs.core.engine.generation import Engine, EngineSettings, Sampling, agreement

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

GiB = 2 ** 30
TOLERANCE = 1e-2  # relative L2 error of float16 logits at each compared step (bench/eval.py's)
QUESTIONS = ["What is a quantum kernel?", "How does depolarizing noise change a kernel matrix?",
             "Explain the fidelity kernel in one sentence.", "What is a feature map?"]


def _chats(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)] + " " * (i // len(QUESTIONS))}]
            for i in range(n)]


@pytest.fixture(scope="module")
def fast(rehearsal_spec, qwen_shape_adapter):
    engine = Engine.load(rehearsal_spec, {"a": qwen_shape_adapter},
                         EngineSettings(device="cuda", memory_budget_gib=rehearsal_spec.train.memory_budget_gib))
    yield engine
    del engine
    torch.cuda.empty_cache()


def test_the_engine_takes_the_fast_path_when_it_fits_and_says_why_not_when_it_does_not(
        rehearsal_spec, qwen_shape_adapter, fast):
    assert fast.path == "gpu-fast"
    assert "dequantized once" in fast.path_note and "CUDA graphs" in fast.path_note
    small = Engine.load(rehearsal_spec, {"a": qwen_shape_adapter}, EngineSettings(device="cuda", memory_budget_gib=2.0))
    assert small.path == "gpu-nf4"
    assert "the fast path was not used because" in small.path_note and "the memory budget is 2.0 GiB" in small.path_note
    del small
    torch.cuda.empty_cache()


def test_fast_path_logits_agree_with_the_4bit_path(rehearsal_spec, qwen_shape_adapter, fast):
    reference = Engine.load(rehearsal_spec, {"a": qwen_shape_adapter}, EngineSettings(device="cuda", fast=False))
    chats = _chats(4)
    for adapter in ("a", None):
        found = agreement(fast.trace(chats, adapter, 4), reference, chats, adapter)
        assert found["max_rel_l2"] < TOLERANCE, (adapter, found)
    del reference
    torch.cuda.empty_cache()


def test_a_session_of_another_length_replaces_the_last_and_captures_again(rehearsal_spec, fast):
    """Synthesis asks with prompts of many lengths: each new cache length replaces the batch session and its graphs.
    Capturing into a freed graph pool crashed the rehearsal's synthesis (an internal assert in torch's allocator)."""
    prompts = fast.prompt_ids(_chats(3))
    short = Sampling(max_new_tokens=8)
    first = fast.complete_ids(prompts, "a", short)
    fast.complete_ids(prompts, "a", Sampling(max_new_tokens=300))  # a longer cache: a new session, new graphs
    fast.complete_ids(prompts[:1], "a", Sampling(max_new_tokens=600))
    assert fast.complete_ids(prompts, "a", short) == first
    # the replaced sessions' caches and graph pools were given back: the process stays inside the budget
    budget = rehearsal_spec.train.memory_budget_gib
    assert torch.cuda.memory_reserved() / GiB <= budget, f"{torch.cuda.memory_reserved() / GiB:.2f} GiB reserved"


@pytest.mark.parametrize("stage", ["eval", "synthesize"])
def test_generation_as_the_stages_run_it_stays_inside_the_budget(rehearsal_spec, fast, stage):
    """eval: a batch of the suite's size, greedy, eval.max_new_tokens; synthesize: the writer's batch, sampled,
    synthesize.max_new_tokens; both then score held-out text (perplexity). Peak reserved memory of the whole
    process (the 4-bit base is gone; the fast weights, caches and graphs are what is held)."""
    if stage == "eval":
        rows, sampling = 39, Sampling(max_new_tokens=rehearsal_spec.eval.max_new_tokens)
    else:
        s = rehearsal_spec.synthesize
        rows = s.writer.batch_size
        sampling = Sampling(max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, seed=s.seed)
    torch.cuda.reset_peak_memory_stats()
    answers = fast.chat(_chats(rows), "a", sampling)
    fast.nll(["A quantum kernel compares two data points through their encoded states. " * 40] * 8, "a")
    peak = torch.cuda.max_memory_reserved() / GiB
    assert len(answers) == rows and all(a.new_tokens <= sampling.max_new_tokens for a in answers)
    assert peak <= rehearsal_spec.train.memory_budget_gib, f"{stage}: {peak:.2f} GiB reserved"
