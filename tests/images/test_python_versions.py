"""The torch-free tests on Python 3.13 (Debian 13's own, in a container): the project installs there with its
torch-free extras, and its core, curate and workflows unit tests pass. CI itself runs on 3.11."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import docker_support

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
TORCH_FREE_TESTS = ["tests/core/spec", "tests/core/store", "tests/core/test_progress.py", "tests/curate",
                    "tests/workflows"]  # their unit tier (the slow tier loads models; tests/core/engine is torch)
LEFT_OUT = ["tests/core/spec/test_suite.py",  # reads the eval tests' fixtures, which need the eval extra (pandas)
            "tests/workflows/test_submit.py"]  # needs the git checkout and make, not in the container's copy


@pytest.fixture(scope="module")
def python313():
    if not docker_support.engine_answers():
        try:
            docker_support.ensure_docker_engine()
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            pytest.skip(f"no Docker engine: {exc}")
    return docker_support.ensure_python313_base()


def test_the_torch_free_tiers_pass_on_python_313(python313, tmp_path):
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout
    tar = subprocess.run(["tar", "-c", "-C", str(REPO), "--null", "-T", "-"], input=files, capture_output=True,
                         check=True, cwd=REPO).stdout
    script = (
        "set -e; mkdir /tmp/src && tar -x -C /tmp/src && cd /tmp/src && python --version && "
        "python -m pip install -q -e '.[curate,workflows,dev]' && "
        "python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec(\"torch\") is not None)' && "
        "python -m pytest -q -p no:cacheprovider -m 'not slow and not docker' "
        + " ".join(f"--ignore={t} " for t in LEFT_OUT)
        + " ".join(TORCH_FREE_TESTS))
    # a named volume keeps pip's downloads between runs (the first install takes minutes on 2 cores)
    done = subprocess.run(["docker", "run", "--rm", "-i", "--network", "host", "--volume",
                           "qslm-pip-cache-py313:/root/.cache/pip", python313, "sh", "-c", script],
                          input=tar, capture_output=True, timeout=1800)
    out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    assert done.returncode == 0, out[-4000:]
    assert "Python 3.13." in out and " passed" in out and " failed" not in out
