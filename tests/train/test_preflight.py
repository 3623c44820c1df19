"""The memory preflight's decision, advice and advisor report (pure); on CPU it is skipped with a note."""

from __future__ import annotations

import pytest
import torch

from jobs.train.data import Example
from jobs.train.loop import Layout
from jobs.train.preflight import MemoryBudgetExceeded, check_budget, preflight, report, worst_case
from tests.train.conftest import with_train


def test_over_budget_is_refused_with_settings_that_would_fit(smoke_spec):
    spec = with_train(smoke_spec, memory_budget_gib=11.5, execution={"gradient_checkpointing": False,
                                                                      "fused_loss": False})
    check_budget(spec, 11.4, micro_batch_size=4, longest=1024)  # under budget: passes
    with pytest.raises(MemoryBudgetExceeded) as err:
        check_budget(spec, 14.6, micro_batch_size=4, longest=1024)
    message = str(err.value)
    assert "14.60 GiB" in message and "11.5" in message and spec.source_file in message
    for tip in ("micro_batch_size: 1", "gradient_checkpointing: true", "max_length: 512", "fused_loss: true"):
        assert tip in message


def test_out_of_memory_names_the_settings_the_advisor_measured_to_fit(smoke_spec):
    spec = with_train(smoke_spec, execution={"checkpoint_layers": "fit", "dequantize_once": True})
    fits = [{"setting": "dequantize_once: false", "peak_reserved_gib": 9.1}]
    with pytest.raises(MemoryBudgetExceeded) as err:
        check_budget(spec, None, micro_batch_size=4, longest=1024, fits=fits)
    message = str(err.value)
    assert "out of memory within train.memory_budget_gib" in message
    assert "Measured to fit: dequantize_once: false (9.1 GiB)" in message
    assert "checkpoint_layers: all" in message and "train.execution.dequantize_once: false" in message


def test_the_advisor_report_marks_what_fits():
    rows = [{"setting": "a", "peak_reserved_gib": 6.2, "tokens_per_s": 13000, "fits": True},
            {"setting": "b", "peak_reserved_gib": None, "fits": False}]
    assert report(rows, 11.5).splitlines() == ["  fits  a: peak 6.2 GiB, 13000 tokens/s",
                                               "  NO    b: out of memory within 11.5 GiB"]


def test_the_worst_case_is_the_longest_examples_with_every_token_in_the_loss():
    examples = [Example(str(n), list(range(n)), [-100] * n) for n in (5, 9, 7, 3)]
    worst = worst_case(examples, 2)
    assert [len(e.input_ids) for e in worst] == [9, 7]
    assert all(e.label_tokens == len(e.input_ids) - 1 for e in worst)


def test_skipped_on_cpu_with_a_note(smoke_spec):
    layout = Layout(micro_batch_size=1, packed=True, pad_id=0, loss_chunk_tokens=0)
    result = preflight(None, [], smoke_spec, layout, torch.device("cpu"), torch.float32, None)
    assert "CPU" in result["skipped"]


def test_fit_trains_with_the_fewest_checkpointed_layers_measured_inside_the_budget_margin(smoke_spec):
    from types import SimpleNamespace

    from jobs.train.execution import checkpointed_layers
    from jobs.train.preflight import FIT_MARGIN, choose

    layers = [SimpleNamespace(gradient_checkpointing=True, forward=None) for _ in range(4)]  # eager layers
    model = SimpleNamespace(get_base_model=lambda: SimpleNamespace(model=SimpleNamespace(layers=layers)))
    budget = 10.0
    rows = [{"layers": 4, "peak_reserved_gib": 6.0}, {"layers": 3, "peak_reserved_gib": 7.5},
            {"layers": 2, "peak_reserved_gib": FIT_MARGIN * budget + 0.1},  # fits the budget, not the margin
            {"layers": 1, "peak_reserved_gib": None}, {"layers": 0, "peak_reserved_gib": None}]
    fit = with_train(smoke_spec, memory_budget_gib=budget, execution={"checkpoint_layers": "fit"})
    assert choose(rows, fit, model)["layers"] == 3
    assert checkpointed_layers(model) == [True, True, True, False]
    assert choose(rows, with_train(fit, execution={"checkpoint_layers": "all"}), model)["layers"] == 4
    assert all(checkpointed_layers(model))
    nothing_fits = [dict(r, peak_reserved_gib=None) for r in rows]
    assert choose(nothing_fits, fit, model)["layers"] == 4  # the spec's own setting, then refused by check_budget
