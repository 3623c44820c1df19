"""Output folders another user can read (jobs/core/store/outputs.py): what Argo's wait container, running as the
executor's uid in the pod's fsGroup, needs to upload them (issue 23)."""

from __future__ import annotations

import os
import stat
import tempfile

import numpy as np
from safetensors.numpy import save_file

from jobs.core.store.outputs import share


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_mkdtemp_folders_and_safetensors_files_become_readable(tmp_path):
    out = tempfile.mkdtemp(dir=tmp_path)  # 0700
    os.mkdir(os.path.join(out, "sub"), 0o700)
    weights = os.path.join(out, "sub", "adapter_model.safetensors")
    save_file({"w": np.zeros(2, dtype=np.float32)}, weights)
    assert mode(out) == 0o700 and mode(weights) & 0o044 != 0o044  # what safetensors and mkdtemp leave
    script = os.path.join(out, "run.sh")
    open(script, "w").close()
    os.chmod(script, 0o700)
    os.symlink("run.sh", os.path.join(out, "link"))
    share(out)
    assert mode(out) == mode(os.path.join(out, "sub")) == 0o755
    assert mode(weights) == 0o644 and mode(script) == 0o744  # read added, the owner's bits kept
    assert stat.S_ISLNK(os.lstat(os.path.join(out, "link")).st_mode)
