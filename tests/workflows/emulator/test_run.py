"""The local runner: its pieces without Docker, the rendered DAGs with stand-in steps, the cluster conditions it
reproduces with Docker (each would have caught a defect the review found on a real cluster), and the smoke build
through it: a git push (planned, built, delivered twice), then a build as `make submit` starts it."""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from jobs.core import progress
from jobs.core.store import keys
from jobs.core.store.registry import artifact_files, verify_build
from jobs.core.store.backends import open_store
from workflows.emulator import pod as local_pod, run as local_run
from workflows import trigger
from tests.workflows.one_step import step_template
from workflows.submit import _git

PAYLOADS = Path(__file__).parents[1] / "payloads"


def test_depends_and_when_follow_argo():
    phases = {"checkout": "Skipped", "curate": "Succeeded", "eval": "Failed", "eval-first": "Skipped"}
    assert local_run.depends_met("checkout.Succeeded || checkout.Skipped", phases)
    assert local_run.depends_met("curate", phases) and local_run.depends_met("checkout", phases)
    assert local_run.depends_met("eval.Succeeded || eval.Failed", phases)
    assert not local_run.depends_met("eval-first.Succeeded || eval-first.Failed", phases)
    assert not local_run.depends_met("curate && !eval.Failed", phases)
    assert local_run.when_met("3 == 0 || 3 == 3") and not local_run.when_met("1 == 0 || 1 == 3")
    assert local_run.when_met("'v1' != ''") and not local_run.when_met("'' != ''")


def test_a_substituted_value_is_never_run_as_code():
    # `when` holds parameters a push payload can set; an expression beyond Argo's little language is refused.
    for hostile in ("__import__('os').system('true') == 0", "().__class__ == 1", "[1] == [1]"):
        with pytest.raises(local_run.RunError, match="cannot evaluate"):
            local_run.when_met(hostile)


def test_substitute_leaves_unknown_variables_for_argo():
    out = local_run.substitute({"a": ["{{workflow.name}}/x", "{{pod.name}}"]}, {"workflow.name": "run-1"})
    assert out == {"a": ["run-1/x", "{{pod.name}}"]}


def test_artifacts_move_like_argo(s3_env, tmp_path):
    """Folders with archive none are keys under a prefix (minio-go places them); a tarball with one top entry
    unpacks to the path (with its own modes); raw data becomes a file; an absent key is None."""
    store = open_store()
    folder = tmp_path / "dataset"
    (folder / "sub").mkdir(parents=True)
    (folder / "train.parquet").write_bytes(b"x")
    (folder / "sub" / "stats.json").write_text("{}")
    local_pod.save_artifact(store, {"s3": {"key": "runs/r/curate/dataset/"}, "archive": {"none": {}}}, folder)
    assert store.list("runs/r/curate/dataset/") == ["runs/r/curate/dataset/sub/stats.json",
                                                     "runs/r/curate/dataset/train.parquet"]
    dest = tmp_path / "in" / "dataset"
    dest.parent.mkdir()
    assert local_pod.fetch_artifact(store, {"s3": {"key": "runs/r/curate/dataset/"}}, dest) == "minio"
    assert (dest / "sub" / "stats.json").read_text() == "{}"

    local_pod.save_artifact(store, {"s3": {"key": "runs/r/checkout/data.tgz"}}, folder)  # default archive: tar.gz
    data = tmp_path / "app" / "data"
    data.parent.mkdir()
    assert local_pod.fetch_artifact(store, {"s3": {"key": "runs/r/checkout/data.tgz"}}, data) == "archive"
    assert (data / "train.parquet").read_bytes() == b"x"
    assert local_pod.fetch_artifact(store, {"raw": {"data": '{"ref": "x"}'}}, tmp_path / "payload.json") == "raw"
    assert local_pod.fetch_artifact(store, {"s3": {"key": "builds/v0/report/metrics.json"}}, tmp_path / "p") is None


class StandIns:
    """Pod.run replaced: each step writes its declared outputs; eval exits with `eval_exit`, the verdict with 3 when
    the gate failed, the push's plan runs the real `workflows.trigger plan` on the placed payload."""

    def __init__(self, eval_exit: int = 0, synthesize: bool = False):
        self.eval_exit, self.synthesize, self.ran = eval_exit, synthesize, []

    def __call__(self, pod, store, sources, fetch_git):
        name = pod.t["name"]
        self.ran.append((pod.name, name))
        out = pod.work / "outputs"
        out.mkdir(parents=True, exist_ok=True)
        artifacts, parameters, code = {}, {}, 0
        if name == "plan":
            payload = pod.work / "payload.json"
            payload.write_text(sources["payload"]["raw"]["data"])
            args = pod.c["args"][:pod.c["args"].index("--json")]
            code = trigger.main(["plan", *[str(payload) if a == "/in/payload.json" else a for a in args],
                                 "--json", str(out / "builds.json")])
            return code, {}, {"builds": (out / "builds.json").read_text()}
        for art in pod.t.get("outputs", {}).get("artifacts", []):
            folder = out / art["name"]
            if art["path"].endswith((".html", ".json")):
                folder.write_text("{}")
            else:
                folder.mkdir()
                for file in ("metrics.json", "gate.json", "report.html", "train.parquet"):
                    (folder / file).write_text("{}")
            artifacts[art["name"]] = folder
        if name.startswith("eval"):
            code = self.eval_exit
        if name == "spec":  # what workflows.stages writes for a spec with or without a synthesize section
            parameters = {"synthesize": "true", "curated": "curate/dataset"} if self.synthesize else \
                {"synthesize": "false", "curated": "dataset"}
            parameters["retrieval"] = "false"  # no `retrieval:` section: the index task is skipped
        if name == "verdict":
            parameters = {"headline": "{}", "gate": "passed"}
            code = 3 if self.eval_exit == 3 else 0
        return code, artifacts, parameters


def _cluster(tmp_path) -> dict:
    return local_run.cluster_objects(open_store(), tmp_path / "volumes")


@pytest.mark.parametrize("eval_exit, phase, published", [
    (0, "Succeeded", True),  # gate passed
    (3, "Failed", True),     # gate failed, report written: published as failed-gate, and the run says Failed
    (1, "Failed", False),    # eval broke: nothing is published
])
def test_gate_verdict_is_published_and_fails_the_run(s3_env, tmp_path, monkeypatch, eval_exit, phase, published):
    """The rendered DAG's wiring, each container replaced by a stand-in that writes its outputs."""
    steps = StandIns(eval_exit)
    monkeypatch.setattr(local_pod.Pod, "run", lambda pod, *a: steps(pod, *a))
    store = open_store()
    name = "qslm-smoke-20260101-000000"
    store.put_bytes(f"runs/{name}/checkout/data.tgz", gzip.compress(b""))  # stands in for data/; never opened
    wf = local_run.pipeline.run_workflow("smoke", "smoke", "t", "0" * 40, name=name).to_dict()
    runner = local_run.LocalRun(wf, _cluster(tmp_path), tmp_path / "work")
    runner.events = tmp_path / "progress.jsonl"
    assert runner.run() == phase
    assert [t for _, t in steps.ran][:4] == ["spec", "curate", "train", "eval-first"]
    events = progress.read_events(runner.events)  # what the studio's running page reads
    assert [e["stage"] for e in events if e["event"] == "stage_start"][:4] == ["spec", "curate", "train", "eval-first"]
    assert all(e["of"] == len(runner.stages) for e in events)
    assert any(e["event"] == "stage_fail" for e in events) is (eval_exit != 0)
    assert ("publish" in [t for _, t in steps.ran]) is published
    assert ("verdict" in [t for _, t in steps.ran]) is published
    assert store.exists(f"runs/{name}/eval/report/gate.json")  # the report is kept even when eval fails
    assert runner.phases["eval"] == "Skipped" and runner.phases["publish"] == "Omitted"
    assert runner.phases["synthesize"] == "Skipped"  # no synthesize section: curate wrote runs/<run>/dataset itself
    assert store.exists(f"runs/{name}/dataset/train.parquet") and not store.list(f"runs/{name}/curate/")


def test_with_synthesis_train_reads_what_synthesize_wrote(s3_env, tmp_path, monkeypatch):
    steps = StandIns(synthesize=True)
    monkeypatch.setattr(local_pod.Pod, "run", lambda pod, *a: steps(pod, *a))
    store = open_store()
    name = "qslm-v2-20260101-000000"
    store.put_bytes(f"runs/{name}/checkout/data.tgz", gzip.compress(b""))
    wf = local_run.pipeline.run_workflow("v2", "v2", "t", "0" * 40, name=name).to_dict()
    runner = local_run.LocalRun(wf, _cluster(tmp_path), tmp_path / "work")
    assert runner.run() == "Succeeded"
    assert [t for _, t in steps.ran][:4] == ["spec", "curate", "synthesize", "train"]
    assert store.exists(f"runs/{name}/curate/dataset/train.parquet")  # curate's output, synthesize's input
    assert store.exists(f"runs/{name}/dataset/train.parquet")  # synthesize's output: what train, eval, publish read


def test_a_push_is_planned_built_and_a_second_delivery_is_a_no_op(s3_env, tmp_path, monkeypatch):
    steps = StandIns()
    monkeypatch.setattr(local_pod.Pod, "run", lambda pod, *a: steps(pod, *a))
    monkeypatch.setenv("QSLM_TRIGGER_SPECS", "")
    cluster = _cluster(tmp_path)
    payload = json.loads((PAYLOADS / "github-push-new-spec.json").read_text())
    name, phase, builds = local_run.local_push(payload, image_tag="v2", work=tmp_path / "work", cluster=cluster)
    assert phase == "Succeeded"
    run = f"qslm-v2-{payload['after'][:8]}"
    assert builds == {run: "Succeeded"}
    started = [t for pod, t in steps.ran if pod.startswith(run)]
    assert started[:2] == ["checkout", "spec"]  # the git path: clone the commit, then check its spec

    steps.ran.clear()  # a redelivery while the build is still running: the same Workflow, applied again
    assert local_run.local_push(payload, image_tag="v2", work=tmp_path / "work", cluster=cluster)[1:] == \
        ("Succeeded", {})
    assert [t for _, t in steps.ran] == ["plan"]
    open_store().put_bytes(keys.manifest_key("v2"), b'{"tag": "v2"}')  # ... and once it is complete: nothing planned
    assert local_run.local_push(payload, image_tag="v2", work=tmp_path / "work", cluster=cluster)[1:] == \
        ("Succeeded", {})


# ---------------------------------------------------------------------------------------------- with Docker
@pytest.fixture(scope="module")
def curate_image():
    from tests import docker_support

    try:
        docker_support.ensure_docker_engine()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:  # say why, as the images tier does
        pytest.skip(f"no Docker engine: {exc}")
    # A tag of our own: the images tier builds and removes its own tags on the same engine.
    return docker_support.build_images("workflows-test", ("curate",))["curate"]


def _run_step(tmp_path, monkeypatch, template: dict) -> tuple[str, dict]:
    """Run a one-step WorkflowTemplate through the runner; returns (phase, results)."""
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(template))
    monkeypatch.setitem(local_run.RENDERED, template["metadata"]["name"], path)
    wf = {"metadata": {"name": "qslm-conditions-1"}, "spec": {"workflowTemplateRef": {"name": "conditions"},
                                                              "arguments": {"parameters": []}}}
    runner = local_run.LocalRun(wf, _cluster(tmp_path), tmp_path / "work")
    return runner.run(), runner.results


@pytest.mark.docker
@pytest.mark.parametrize("out_volume, phase", [(True, "Succeeded"), (False, "Failed")])
def test_outputs_need_a_declared_volume(s3_env, tmp_path, monkeypatch, capfd, curate_image, out_volume, phase):
    """The first blocker: uid 10001 cannot create /out on the image's read-only root unless the template declares
    a volume there (the old runner mounted a writable /out for every step)."""
    code = ("import pathlib; pathlib.Path('/tmp/scratch').write_text('x'); p = pathlib.Path('/out/dataset'); "
            "p.mkdir(parents=True); (p / 'a.txt').write_text('x')")
    template = step_template(curate_image, ["python", "-c", code], outputs={"dataset": "/out/dataset"},
                             out_volume=out_volume)
    got, results = _run_step(tmp_path, monkeypatch, template)
    assert got == phase
    assert open_store().exists("runs/qslm-conditions-1/step/dataset/a.txt") is out_volume
    logs = "".join(capfd.readouterr())  # the container's own output
    assert ("Read-only file system: '/out'" in logs) is not out_volume


@pytest.mark.docker
@pytest.mark.parametrize("mode, phase", [(0o755, "Succeeded"), (None, "Failed")])
def test_inputs_are_placed_by_root_with_minio_modes(s3_env, tmp_path, monkeypatch, curate_image, mode, phase):
    """The second blocker: Argo's init step writes S3 folders 0700/0600 as its own user; without `mode` the step's
    user cannot read them (argo-workflows#14792)."""
    store = open_store()
    store.put_bytes("runs/in/dataset/train.parquet", b"rows")
    code = "import pathlib, os; print(os.getuid(), pathlib.Path('/in/dataset/train.parquet').read_bytes())"
    template = step_template(curate_image, ["python", "-c", code],
                             inputs={"dataset": ("/in/dataset", "runs/in/dataset/")}, mode=mode)
    got, _ = _run_step(tmp_path, monkeypatch, template)
    assert got == phase


@pytest.mark.docker
@pytest.mark.parametrize("mode, phase", [(0o755, "Succeeded"), (0o700, "Failed")])
def test_outputs_the_executor_cannot_read_fail_the_step(s3_env, tmp_path, monkeypatch, capfd, curate_image, mode,
                                                        phase):
    """Blocker 1 of issue 23: a folder made by mkdtemp (0700) is the step user's alone; Argo's wait container (the
    executor's uid, the pod's groups, no capabilities) cannot list it and uploads nothing, and the step still
    Succeeds. The runner reads outputs back as that user and fails the step instead, naming the path."""
    code = ("import os, tempfile; t = tempfile.mkdtemp(dir='/out'); open(t + '/a.txt', 'w').write('x'); "
            f"os.chmod(t, {mode}); os.rename(t, '/out/dataset')")
    template = step_template(curate_image, ["python", "-c", code], outputs={"dataset": "/out/dataset"})
    got, _ = _run_step(tmp_path, monkeypatch, template)
    assert got == phase
    assert open_store().exists("runs/qslm-conditions-1/step/dataset/a.txt") is (phase == "Succeeded")
    logs = "".join(capfd.readouterr())
    assert bool(re.search(r"uid 8737.*cannot read these outputs.*/out/dataset", logs)) is (phase == "Failed")


@pytest.mark.docker
def test_root_is_refused_under_run_as_non_root(s3_env, tmp_path, monkeypatch, curate_image):
    template = step_template(curate_image, ["python", "-c", "print('hi')"])
    template["spec"]["securityContext"]["runAsUser"] = 0
    with pytest.raises(local_pod.PodError, match="runAsNonRoot, but the container would run as root"):
        _run_step(tmp_path, monkeypatch, template)


@pytest.mark.docker
def test_smoke_build_through_the_faithful_runner(s3_env, data_repo, tmp_path, monkeypatch):
    """Every step in its image under a cluster's conditions, data only through S3: a push of the smoke spec (plan ->
    start -> checkout -> spec -> curate -> train -> eval-first -> publish-first -> verdict-first), the same push
    delivered again (nothing new), then `smoke-next` as `make submit` starts it, compared with `smoke`."""
    from tests import docker_support

    try:
        docker_support.ensure_docker_engine()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no Docker engine: {exc}")
    image_tag = "workflows-test"
    docker_support.build_images(image_tag)
    monkeypatch.setenv("QSLM_TRIGGER_SPECS", "")  # only the pushed spec file decides

    commit = _git(data_repo, "rev-parse", "HEAD")
    store = open_store()
    cluster = local_run.cluster_objects(store, tmp_path / "volumes")
    run = dict(image_tag=image_tag, work=tmp_path / "work", cluster=cluster)
    payload = {"ref": "refs/heads/main", "before": "0" * 40, "after": commit, "total_commits": 1,
               "repository": {"clone_url": str(data_repo)},
               "commits": [{"id": commit, "timestamp": "2026-11-29T10:00:00+01:00", "modified": [],
                            "added": ["data/builds/smoke.yaml"], "removed": []}]}

    # 1. the git push: the plan decides `smoke`, the build clones the commit and saves its data/ for the others
    _, phase, builds = local_run.local_push(payload, **run)
    assert phase == "Succeeded" and list(builds.values()) == ["Succeeded"], builds
    (name,) = builds
    manifest = json.loads(store.get_bytes(keys.manifest_key("smoke")))
    assert manifest["status"] == "passed"  # the smoke spec gates nothing
    assert manifest["git"]["commit"] == commit
    assert manifest["sources"] and all(s["path"].startswith("data/raw/") for s in manifest["sources"])
    for artifact, must in {"dataset": "train.parquet", "adapter": "adapter_model.safetensors",
                           "report": "report.html"}.items():
        assert must in {rec["path"] for _, rec in artifact_files(manifest, "smoke", artifact)}
    check = verify_build(store, "smoke")  # every file the manifest lists is stored, byte for byte
    assert check.files and not check.damaged
    # intermediates under runs/<run>/<stage>/, as the cluster leaves them; checkpoints stay on the run's volume
    assert store.list(f"runs/{name}/curate/dataset/") and store.list(f"runs/{name}/train/adapter/")
    assert not any("checkpoints" in k for k in store.list(f"runs/{name}/"))
    assert list((tmp_path / "work" / name / "claims" / "train-state" / "checkpoints").glob("step-*"))
    assert store.exists(f"runs/{name}/eval/report.html")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(store.get_bytes(f"runs/{name}/checkout/data.tgz")))) as tf:
        assert "data/builds/smoke.yaml" in tf.getnames()

    # 2. the same push delivered again: the tag is complete, nothing new is built, and that is no failure
    assert local_run.local_push(payload, **run)[1:] == ("Succeeded", {})

    # 3. the `make submit` path: data/ uploaded by the runner; eval runs with --previous (the smoke build)
    spec = (data_repo / "data" / "builds" / "smoke.yaml").read_text()
    (data_repo / "data" / "builds" / "smoke-next.yaml").write_text(spec)
    _git(data_repo, "add", "data")
    _git(data_repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "next")
    name, phase = local_run.local_run("smoke-next", repo=data_repo, **run)
    assert phase == "Succeeded"
    manifest = json.loads(store.get_bytes(keys.manifest_key("smoke-next")))
    assert manifest["previous"] == "smoke" and manifest["git"]["commit"] == _git(data_repo, "rev-parse", "HEAD")
