"""The local runner's pieces (no Docker), and the rendered workflow run with Docker against a real S3 endpoint."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from jobs.core import keys
from jobs.core.store import open_store
from workflows import local_run
from workflows.submit import _git


def test_depends_and_when_follow_argo():
    phases = {"checkout": "Skipped", "curate": "Succeeded", "eval": "Failed", "eval-first": "Skipped"}
    assert local_run.depends_met("checkout.Succeeded || checkout.Skipped", phases)
    assert local_run.depends_met("curate", phases) and local_run.depends_met("checkout", phases)
    assert local_run.depends_met("eval.Succeeded || eval.Failed", phases)
    assert not local_run.depends_met("eval-first.Succeeded || eval-first.Failed", phases)
    assert not local_run.depends_met("curate && !eval.Failed", phases)
    assert local_run.when_met("3 == 0 || 3 == 3") and not local_run.when_met("1 == 0 || 1 == 3")
    assert local_run.when_met("'v1' != ''") and not local_run.when_met("'' != ''")


def test_substitute_leaves_unknown_variables_for_argo():
    out = local_run.substitute({"a": ["{{workflow.name}}/x", "{{pod.name}}"]}, {"workflow.name": "run-1"})
    assert out == {"a": ["run-1/x", "{{pod.name}}"]}


def test_artifacts_move_like_argo(s3_env, tmp_path):
    """Folders with archive none are keys under a prefix; a tarball with one top entry unpacks to the path."""
    store = open_store()
    folder = tmp_path / "dataset"
    (folder / "sub").mkdir(parents=True)
    (folder / "train.parquet").write_bytes(b"x")
    (folder / "sub" / "stats.json").write_text("{}")
    local_run.upload(store, {"s3": {"key": "runs/r/curate/dataset/"}, "archive": {"none": {}}}, folder)
    assert store.list("runs/r/curate/dataset/") == ["runs/r/curate/dataset/sub/stats.json",
                                                     "runs/r/curate/dataset/train.parquet"]
    assert local_run.download(store, {"s3": {"key": "runs/r/curate/dataset/"}}, tmp_path / "in" / "dataset")
    assert (tmp_path / "in" / "dataset" / "sub" / "stats.json").read_text() == "{}"

    local_run.upload(store, {"s3": {"key": "runs/r/checkout/data.tgz"}}, folder)  # default archive: tar.gz
    assert local_run.download(store, {"s3": {"key": "runs/r/checkout/data.tgz"}}, tmp_path / "app" / "data")
    assert (tmp_path / "app" / "data" / "train.parquet").read_bytes() == b"x"
    assert not local_run.download(store, {"s3": {"key": "builds/v0/report/metrics.json"}}, tmp_path / "prev")


@pytest.mark.parametrize("eval_exit, phase, published", [
    (0, "Succeeded", True),   # gate passed
    (3, "Succeeded", True),   # gate failed, report written: published as failed-gate
    (1, "Failed", False),     # eval broke: nothing is published
])
def test_gate_verdict_is_published_and_eval_errors_are_not(s3_env, tmp_path, monkeypatch, eval_exit, phase,
                                                           published):
    """The rendered DAG's wiring, with each container replaced by a stand-in that writes its outputs."""
    outputs = {"curate": "/out/dataset", "train": "/out/adapter", "eval-first": "/out/report"}
    ran, real_run = [], subprocess.run

    def fake_docker(argv, *args, **kw):
        if argv[0] != "docker":
            return real_run(argv, *args, **kw)
        task = argv[argv.index("--name") + 1].split("-", 4)[-1]  # qslm-smoke-<date>-<time>-<task>
        ran.append(task)
        mounts = {spec.split(":")[1]: Path(spec.split(":")[0])
                  for flag, spec in zip(argv, argv[1:]) if flag == "-v"}
        if task in outputs:
            folder = local_run.LocalRun._host_path(outputs[task], mounts)
            folder.mkdir(parents=True, exist_ok=True)
            for name in ("metrics.json", "gate.json", "report.html", "train.parquet"):
                (folder / name).write_text("{}")
        return subprocess.CompletedProcess(argv, eval_exit if task == "eval-first" else 0)

    monkeypatch.setattr(local_run.subprocess, "run", fake_docker)
    store = open_store()
    name = "qslm-smoke-20260101-000000"
    store.put_bytes(f"runs/{name}/checkout/data.tgz", gzip.compress(b""))  # stands in for data/; never opened
    wf = local_run.pipeline.run_workflow("smoke", "smoke", "t", "0" * 40, name=name).to_dict()
    template = yaml.safe_load(local_run.RENDERED.read_text())
    secrets, configmaps = local_run.store_objects()
    runner = local_run.LocalRun(template, wf, store, tmp_path / "work", secrets, configmaps, tmp_path / "volumes")
    assert runner.run() == phase
    assert ran[:3] == ["curate", "train", "eval-first"]
    assert ("publish-first" in ran) is published
    assert store.exists(f"runs/{name}/eval/report/gate.json")  # the report is kept even when eval fails
    assert runner.phases["eval"] == "Skipped" and runner.phases["publish"] == "Omitted"


@pytest.mark.docker
def test_rendered_workflow_runs_in_docker_and_publishes_a_complete_tag(s3_env, data_repo, tmp_path):
    """Two builds, each step in its image, data only through S3: `smoke` by the git-trigger path (checkout ->
    curate -> train -> eval-first -> publish-first), then `smoke-next` by the submit path, compared with `smoke`."""
    from tests import docker_support

    try:
        docker_support.ensure_docker_engine()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:  # say why, as the images tier does
        pytest.skip(f"no Docker engine: {exc}")
    # A tag of our own: the images tier builds and removes its own tags on the same engine.
    image_tag = "workflows-test"
    docker_support.build_images(image_tag)

    # A second tag with the same spec, committed, so the second run has a previous build to compare with.
    spec = (data_repo / "data" / "builds" / "smoke.yaml").read_text()
    (data_repo / "data" / "builds" / "smoke-next.yaml").write_text(spec)
    _git(data_repo, "add", "data")
    _git(data_repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "next")
    commit = _git(data_repo, "rev-parse", "HEAD")
    store = open_store()
    run = dict(repo=data_repo, image_tag=image_tag, work=tmp_path / "work", volumes=tmp_path / "volumes")

    # 1. the git-trigger path: the checkout task clones the commit and saves its data/ for the other steps
    name, phase = local_run.local_run("smoke", git_repo=str(data_repo), **run)
    assert phase == "Succeeded"
    manifest = json.loads(store.get_bytes(keys.manifest_key("smoke")))
    assert manifest["status"] == "passed"  # the smoke spec gates nothing
    assert manifest["git"]["commit"] == commit
    assert manifest["sources"] and all(s["path"].startswith("data/raw/") for s in manifest["sources"])
    for artifact, must in {"dataset": "train.parquet", "adapter": "adapter_model.safetensors",
                           "report": "report.html"}.items():
        stored = store.list(keys.artifact_prefix("smoke", artifact))
        assert keys.artifact_prefix("smoke", artifact) + must in stored
        assert len(stored) == len(manifest["artifacts"][artifact])
    assert not any("/checkpoints/" in k for k in store.list("builds/smoke/adapter/"))
    # intermediates under runs/<run>/<stage>/, as the cluster leaves them
    assert store.list(f"runs/{name}/curate/dataset/") and store.list(f"runs/{name}/train/adapter/")
    assert store.exists(f"runs/{name}/eval/report.html")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(store.get_bytes(f"runs/{name}/checkout/data.tgz")))) as tf:
        assert "data/builds/smoke.yaml" in tf.getnames()

    # 2. the `make submit` path: data/ uploaded by the runner; eval runs with --previous (the smoke build)
    name, phase = local_run.local_run("smoke-next", **run)
    assert phase == "Succeeded"
    manifest = json.loads(store.get_bytes(keys.manifest_key("smoke-next")))
    assert manifest["previous"] == "smoke" and manifest["git"]["commit"] == commit
