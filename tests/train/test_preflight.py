"""The memory preflight's decision and advice (pure); on CPU it is skipped with a note."""

from __future__ import annotations

import pytest
import torch

from jobs.train.preflight import MemoryBudgetExceeded, check_budget, preflight
from tests.train.conftest import with_train


def test_over_budget_is_refused_with_settings_that_would_fit(smoke_spec):
    spec = with_train(smoke_spec, memory_budget_gib=11.5, execution={"gradient_checkpointing": False})
    check_budget(spec, 11.4, micro_batch_size=4, longest=1024)  # under budget: passes
    with pytest.raises(MemoryBudgetExceeded) as err:
        check_budget(spec, 14.6, micro_batch_size=4, longest=1024)
    message = str(err.value)
    assert "14.60 GiB" in message and "11.5" in message and spec.source_file in message
    for tip in ("micro_batch_size: 1", "gradient_checkpointing: true", "max_length: 512"):
        assert tip in message


def test_skipped_on_cpu_with_a_note(smoke_spec):
    result = preflight(None, [], smoke_spec, 1, 0, torch.device("cpu"), torch.float32, None)
    assert "CPU" in result["skipped"]
