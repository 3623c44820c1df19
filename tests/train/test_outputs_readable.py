"""train's adapter folder is readable by another user: safetensors writes 0600, and Argo's wait container (the
executor's uid) must upload the adapter (issue 23; found by the local runner's executor read-back)."""

from __future__ import annotations

import os
import stat

import numpy as np
from safetensors.numpy import save_file

from jobs.train.run import State, write_outputs


class Saves:
    def save_pretrained(self, out, **kw):
        save_file({"w": np.zeros(2, dtype=np.float32)}, str(out / "adapter_model.safetensors"))


def test_every_file_of_the_adapter_folder_is_readable_by_others(tmp_path):
    out = tmp_path / "adapter"
    state = State(optimizer=None, scheduler=None, scaler=None,
                  metrics=[{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}])
    write_outputs(out, Saves(), Saves(), state, {"steps": 2})
    files = list(out.iterdir())
    assert {f.name for f in files} >= {"adapter_model.safetensors", "metrics.json", "train-info.json"}
    for f in files + [out]:
        least = 0o755 if f.is_dir() else 0o644
        assert stat.S_IMODE(os.stat(f).st_mode) & least == least, f
