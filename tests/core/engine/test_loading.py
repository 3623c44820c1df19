"""jobs/core/engine/loading.py: a CUDA out-of-memory error becomes one line with the card's memory and the fix."""

from __future__ import annotations

import pytest
import torch

from jobs.core.engine.loading import ModelError, budget_fix, gpu_memory_errors
from jobs.core.errors import QslmError
from jobs.core.repo import REPO_ROOT
from jobs.core.spec.load import spec_by_tag

GiB = 2 ** 30
OOM = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 11.99 GiB\nof which ..."


def test_an_out_of_memory_error_becomes_one_line_with_the_fix():
    with pytest.raises(ModelError) as caught:
        with gpu_memory_errors("ask on the CPU (--device cpu)"):
            raise torch.OutOfMemoryError(OOM)
    message = str(caught.value)
    assert "\n" not in message and caught.value.__cause__ is None and caught.value.__suppress_context__
    assert message.startswith("the GPU ran out of memory: close the other programs that use it (nvidia-smi")
    assert "or ask on the CPU (--device cpu) (torch: CUDA out of memory. Tried to allocate 2.00 GiB." in message


def test_it_says_how_the_cards_memory_stood(monkeypatch):
    """An A2000 that also drives a display: 0.49 GiB held outside this process's allocator."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (int(0.3 * GiB), int(11.99 * GiB)))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda: int(11.2 * GiB))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "NVIDIA RTX A2000 12GB")
    spec = spec_by_tag("v2")
    with pytest.raises(ModelError) as caught:
        with gpu_memory_errors(budget_fix(spec, "data/builds/v2.yaml")):
            raise torch.OutOfMemoryError(OOM)
    assert str(caught.value).startswith(
        "the GPU ran out of memory (NVIDIA RTX A2000 12GB: 11.99 GiB in all, 11.20 held by this process's allocator, "
        "0.49 by CUDA contexts and other programs): close the other programs that use it (nvidia-smi lists them), "
        f"or lower train.memory_budget_gib ({spec.train.memory_budget_gib:g} GiB now) in data/builds/v2.yaml (torch: ")


@pytest.mark.parametrize("error", [ValueError("a bug keeps its traceback"), QslmError("already one line")])
def test_every_other_error_passes_through_unchanged(error):
    with pytest.raises(type(error)) as caught:
        with gpu_memory_errors("ask on the CPU (--device cpu)"):
            raise error
    assert caught.value is error


def test_the_train_stage_prints_it_as_its_one_line_error(tmp_path, monkeypatch, capsys):
    from jobs.train import __main__ as train_main
    import jobs.train.run

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError(OOM)
    monkeypatch.setattr(jobs.train.run, "train", out_of_memory)
    spec = REPO_ROOT / "data" / "builds" / "smoke.yaml"
    rc = train_main.main(["--spec", str(spec), "--dataset", str(tmp_path / "d"), "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("train: error: the GPU ran out of memory") and "train.memory_budget_gib" in err
    assert f"in {spec} (torch: CUDA out of memory." in err
