"""No value given to make reaches a shell or make's own expansion: each hostile value arrives as one argument,
byte for byte, and nothing it asks to run runs. VERSION (and the paths and port) are checked before anything runs.

The commands are run for real with PY (and PYTHON) pointing at a script that records its arguments, so the
recipes' quoting is what is tested, not a reading of the Makefile.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


REPO_ROOT = Path(__file__).resolve().parents[1]

HOSTILE = ["x;touch {m}", "`touch {m}`", "$(touch {m})", "$(shell touch {m})", "' ; touch {m} ; '",
           "a\ntouch {m}", '"$(touch {m})"', "$$(touch {m})", "${{HOME}}$(info x)$(shell touch {m})", "-e x|touch {m}&"]
# target -> the variables it passes on (besides VERSION)
TARGETS = {"ask": ["Q"], "compare": ["A", "B"], "gc": ["MIN_AGE_HOURS", "APPLY", "CLEAR_CACHE"], "export": ["OUT", "FORMAT", "QUANT"],
           "submit": ["REGISTRY", "WAIT"], "local-run": ["PAYLOAD", "IMAGE_TAG"],
           "images": ["REGISTRY", "PYTHON_BASE", "TORCH_BASE", "PUSH"]}


@pytest.fixture
def fake_python(tmp_path):
    script = tmp_path / "bin" / "python"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done >> \"$ARGV_OUT\"\n")
    script.chmod(0o755)
    return script


def _make(args: list[str], tmp_path: Path, fake_python: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    out = tmp_path / "argv"
    out.write_bytes(b"")
    # -o: the venv counts as made (nothing is installed); PY and PYTHON: the recording script
    result = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", f"PY={fake_python}",
                             f"PYTHON={fake_python}", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**os.environ, "ARGV_OUT": str(out)}, timeout=60)
    return result, [a for a in out.read_bytes().decode().split("\0") if a]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_hostile_values_arrive_as_one_argument_and_run_nothing(target, tmp_path, fake_python):
    marker = tmp_path / "ran"
    for variable in TARGETS[target]:
        for template in HOSTILE:
            value = template.format(m=marker)
            result, argv = _make([target, "VERSION=smoke", f"{variable}={value}"], tmp_path, fake_python)
            assert not marker.exists(), (target, variable, value, result.stderr)
            assert "-m" in argv or "images/build_images.py" in argv, (target, variable, result.stderr)
            if variable not in ("APPLY", "WAIT", "PUSH"):  # flags: only whether they are set matters
                assert value in argv, (target, variable, value, argv)


@pytest.mark.parametrize("target", ["build", "show", "ask", "serve", "submit", "export", "promote", "images"])
def test_a_version_that_is_not_a_tag_stops_make_before_anything_runs(target, tmp_path, fake_python):
    marker = tmp_path / "ran"
    for template in HOSTILE + ["v1,", ",v1", "v1 v2", "a" * 64, "../v1", "v1\n"]:
        value = template.format(m=marker)
        result, argv = _make([target, f"VERSION={value}"], tmp_path, fake_python)
        assert result.returncode == 2 and argv == [], (value, result.stdout)
        assert "is not a build tag" in result.stderr and not marker.exists()


def test_tag_lists_pass_and_each_item_is_checked(tmp_path, fake_python):
    result, argv = _make(["submit", "VERSION=v2,v3"], tmp_path, fake_python)
    assert result.returncode == 0, result.stderr
    assert argv[:4] == ["-m", "jobs.core.spec", "v2", "v3"] and "v2,v3" in argv
    result, argv = _make(["serve", "VERSION=smoke,v1", "PORT=8123"], tmp_path, fake_python)
    assert argv == ["-m", "jobs.serve.api", "--tag", "smoke,v1", "--port", "8123"]
    result, argv = _make(["serve", "VERSION=smoke,v1;x"], tmp_path, fake_python)
    assert result.returncode == 2 and argv == []


@pytest.mark.parametrize("variable,value", [("PORT", "80;touch {m}"), ("PORT", "$(shell touch {m})"),
                                            ("VENV", ".venv;touch {m}"), ("EXTRAS", "dev]' ; touch {m} #")])
def test_ports_and_paths_are_checked_before_anything_runs(variable, value, tmp_path, fake_python):
    marker = tmp_path / "ran"
    result, argv = _make(["serve", f"{variable}={value.format(m=marker)}"], tmp_path, fake_python)
    assert result.returncode == 2 and argv == [] and not marker.exists()
    assert f"{variable}=" in result.stderr


def test_hostile_environment_values_are_quoted_too(tmp_path, fake_python):
    marker = tmp_path / "ran"
    out = tmp_path / "argv"
    env = {**os.environ, "ARGV_OUT": str(out), "Q": f"$(shell touch {marker}) `touch {marker}`"}
    subprocess.run(["make", "-o", ".venv/.installed", f"PY={fake_python}", "ask"], cwd=REPO_ROOT, env=env,
                   capture_output=True, timeout=60)
    assert not marker.exists() and env["Q"] in out.read_bytes().decode().split("\0")


def test_command_line_settings_reach_the_commands_as_given(tmp_path, fake_python):
    marker = tmp_path / "ran"
    out, env_out = tmp_path / "argv", tmp_path / "env"
    script = tmp_path / "bin" / "python"
    script.write_text(script.read_text() + 'printf %s "$QSLM_STORE" > "$ENV_OUT"\n')
    store = f"/srv/store $(shell touch {marker}) `touch {marker}`"
    subprocess.run(["make", "-o", ".venv/.installed", f"PY={fake_python}", "list", f"QSLM_STORE={store}"],
                   cwd=REPO_ROOT, env={**os.environ, "ARGV_OUT": str(out), "ENV_OUT": str(env_out)},
                   capture_output=True, timeout=60)
    assert env_out.read_text() == store and not marker.exists()


def test_cluster_passes_dry_run_quoted():
    result = subprocess.run(["make", "-n", "cluster", "DRY_RUN=1;touch x"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert "DRY_RUN='1;touch x' UNINSTALL='' DELETE_DATA='' scripts/cluster.sh" in result.stdout
