"""The rendered pipeline: valid for Argo v4 (strict schema, Hera's models), references that resolve, the stage
contract of docs/architecture.md, GPU and retry settings, and no drift between the code and the committed YAML."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from hera.workflows.models import Workflow as WorkflowModel, WorkflowTemplate as WorkflowTemplateModel

from tests.conftest import shared
from workflows.emulator import run as local_run
from workflows import render
from workflows.emulator.lint import ancestors, lint
from workflows.pipeline import DATA, GATE_FAILED, pipeline_template
from workflows.push import push_template

REPO = Path(__file__).resolve().parents[2]
# The shared Argo schemas live beside the repository (/work/shared), also seen from a worktree (/work/wt/<name>).
SCHEMAS = shared("schemas")
STRICT_SCHEMA = SCHEMAS / "argo-workflows.strict.schema.json"


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.safe_load(render.PIPELINE_FILES[0].read_text())


@pytest.fixture(scope="module")
def push() -> dict:
    return yaml.safe_load(render.PUSH_FILES[0].read_text())


@pytest.fixture(scope="module")
def sample() -> dict:
    return yaml.safe_load(render.SAMPLE_FILE.read_text())


@pytest.fixture(scope="module")
def strict_validator():
    if not STRICT_SCHEMA.is_file():
        pytest.skip(f"{STRICT_SCHEMA} is absent (the shared Argo schemas live beside the repository)")
    schema = json.loads(STRICT_SCHEMA.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def _by_name(template: dict) -> dict[str, dict]:
    return {t["name"]: t for t in template["spec"]["templates"]}


def test_rendered_files_are_up_to_date():
    stale = [str(p.relative_to(REPO)) for p, text in render.rendered().items()
             if not p.is_file() or p.read_text() != text]
    assert not stale, f"run `make render`: {stale} differ from workflows/pipeline.py"


def test_render_check_fails_on_drift(tmp_path, monkeypatch, capsys):
    copy_path = tmp_path / "pipeline.yaml"
    copy_path.write_text(render.PIPELINE_FILES[0].read_text().replace("curate", "kurate", 1))
    monkeypatch.setattr(render, "PIPELINE_FILES", (copy_path,))
    monkeypatch.setattr(render, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(render, "SAMPLE_FILE", tmp_path / "sample-run.yaml")
    assert render.main(["--check"]) == 1
    assert "make render" in capsys.readouterr().err
    assert render.main([]) == 0 and render.main(["--check"]) == 0


@pytest.mark.parametrize("name", ["template", "push", "sample"])
def test_valid_against_the_strict_argo_schema(name, request, strict_validator):
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}"
              for e in strict_validator.iter_errors(request.getfixturevalue(name))]
    assert errors == []


@pytest.mark.parametrize("fault", [
    lambda t: t["spec"].update(podGc=t["spec"].pop("podGC")),  # a typo Argo would ignore without strict mode
    lambda t: _by_name(t)["train"].update(synchronization={"mutex": {"name": "gpu"}}),  # v3 syntax, gone in v4
    lambda t: _by_name(t)["train"]["container"].pop("image"),
])
def test_strict_schema_catches_what_argo_v4_rejects(template, strict_validator, fault):
    bad = copy.deepcopy(template)
    fault(bad)
    assert list(strict_validator.iter_errors(bad))


def _crd_validator(kind: str):
    """The openAPIV3Schema of Argo v4.0.10's full CRD: what the API server checks when the object is applied
    (CEL rules aside). x-kubernetes-int-or-string fields take both types, as the server does."""
    path = SCHEMAS / f"argo-workflows-v4.0.10-crd-full-{kind}.yaml"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    schema = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    def int_or_string(node):
        if isinstance(node, dict):
            if node.get("x-kubernetes-int-or-string"):
                node["type"] = ["string", "integer"]
            for value in node.values():
                int_or_string(value)
        elif isinstance(node, list):
            for value in node:
                int_or_string(value)

    int_or_string(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("name, kind", [("template", "workflowtemplates"), ("push", "workflowtemplates"),
                                        ("sample", "workflows")])
def test_valid_against_argo_full_crd(name, kind, request):
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}"
              for e in _crd_validator(kind).iter_errors(request.getfixturevalue(name))]
    assert errors == []


def test_hera_models_accept_them(template, push, sample):
    assert WorkflowTemplateModel.model_validate(template).metadata.name == "quantum-slm"
    assert WorkflowTemplateModel.model_validate(push).metadata.name == "quantum-slm-push"
    assert WorkflowModel.model_validate(sample).spec.workflow_template_ref.name == "quantum-slm"


def test_references_resolve(template, push, sample):
    assert lint(template, sample) == []
    assert lint(push) == []


@pytest.mark.parametrize("fault, expected", [
    (lambda t: _by_name(t)["build"]["dag"]["tasks"][2].update(template="kurate"), "template 'kurate' does not exist"),
    (lambda t: _by_name(t)["curate"]["container"]["args"].append("{{inputs.parameters.seed}}"),
     "not a declared input parameter"),
    (lambda t: _by_name(t)["curate"]["container"]["args"].append("{{workflow.parameters.sede}}"),
     "not a workflow argument"),
    (lambda t: _by_name(t)["build"]["dag"]["tasks"][6]["arguments"]["artifacts"][0].update(
        **{"from": "{{tasks.eval.outputs.artifacts.report}}"}), "not upstream"),
    (lambda t: _by_name(t)["build"]["dag"]["tasks"][6]["arguments"]["artifacts"][0].update(
        **{"from": "{{tasks.train.outputs.artifacts.adaptr}}"}), "has no output artifact 'adaptr'"),
    (lambda t: _by_name(t)["build"]["dag"]["tasks"][6]["arguments"].update(artifacts=[]),
     "input artifact 'adapter' of eval-first is not given"),
    (lambda t: _by_name(t)["train"].pop("podSpecPatch"), "no runtimeClassName nvidia"),
    (lambda t: _by_name(t)["train"].pop("synchronization"), "no GPU semaphore"),
    (lambda t: _by_name(t)["train"].update(synchronization={"mutexes": [{"name": "gpu"}]}), "no GPU semaphore"),
])
def test_lint_catches_broken_references(template, fault, expected):
    bad = copy.deepcopy(template)
    fault(bad)
    assert any(expected in p for p in lint(bad)), lint(bad)


def test_lint_checks_the_workflow_against_the_template(template, sample):
    wf = copy.deepcopy(sample)
    wf["spec"]["arguments"]["parameters"] = [p for p in wf["spec"]["arguments"]["parameters"] if p["name"] != "tag"]
    wf["spec"]["arguments"]["parameters"].append({"name": "tga", "value": "v1"})
    problems = lint(template, wf)
    assert any("required parameter 'tag'" in p for p in problems)
    assert any("'tga'" in p for p in problems)


def test_stages_run_exactly_the_contract_commands(template):
    t = _by_name(template)
    spec = DATA + "/builds/{{workflow.parameters.spec}}.yaml"
    cmd = {name: t[name]["container"]["command"] + t[name]["container"]["args"]
           for name in ("spec", "curate", "synthesize", "train", "index", "eval-first", "eval-vs-previous", "publish",
                        "verdict")}
    assert cmd["spec"] == ["python", "-m", "workflows.stages", "--spec", spec, "--out", "/out"]
    assert cmd["curate"] == ["python", "-m", "jobs.curate", "--spec", spec, "--out", "/out/dataset"]
    assert cmd["synthesize"] == ["python", "-m", "jobs.synthesize", "--spec", spec, "--dataset", "/in/curated",
                                 "--out", "/out/dataset"]
    assert cmd["train"] == ["python", "-m", "jobs.train", "--spec", spec, "--dataset", "/in/dataset",
                            "--out", "/out/adapter", "--checkpoints", "/state/checkpoints"]
    assert cmd["index"] == ["python", "-m", "jobs.index", "--spec", spec, "--dataset", "/in/dataset",
                            "--out", "/out/index"]
    eval_cmd = ["python", "-m", "jobs.eval", "--spec", spec, "--dataset", "/in/dataset", "--adapter", "/in/adapter",
                "--out", "/out/report", "--index", "/in/index"]
    assert cmd["eval-first"] == eval_cmd and cmd["eval-vs-previous"] == eval_cmd + ["--previous", "/in/previous"]
    assert cmd["publish"][:12] == ["python", "-m", "jobs.core.store.publish", "--spec", spec, "--tag",
                                   "{{workflow.parameters.tag}}", "--dataset", "/in/dataset", "--adapter",
                                   "/in/adapter", "--report"]
    assert cmd["verdict"] == ["python", "-m", "workflows.verdict", "--report", "/in/report", "--out", "/out"]
    images = {name: t[name]["container"]["image"].split("qslm-")[1].split(":")[0] for name in cmd}
    assert images == {"spec": "curate", "curate": "curate", "synthesize": "train", "train": "train",
                      "index": "eval", "eval-first": "eval",
                      "eval-vs-previous": "eval", "publish": "curate", "verdict": "curate"}
    for name in set(cmd) - {"verdict"}:  # every stage reads data/ at the build's commit, over the image's copy
        data = next(a for a in t[name]["inputs"]["artifacts"] if a["name"] == "data")
        assert data["path"] == DATA and data["s3"] == {"key": "runs/{{workflow.name}}/checkout/data.tgz"}


def test_the_spec_is_validated_before_any_other_work(template):
    tasks = {task["name"]: task for task in _by_name(template)["build"]["dag"]["tasks"]}
    assert tasks["spec"]["depends"] == "checkout.Succeeded || checkout.Skipped"  # the git path fetches data/ first
    for name in set(tasks) - {"checkout", "spec"}:
        assert "spec" in ancestors(name, tasks), f"{name} may run before the spec check"


def test_artifacts_use_the_store_key_layout(template):
    for t in template["spec"]["templates"]:
        for art in t.get("outputs", {}).get("artifacts", []):
            key = art["s3"]["key"]
            assert key.startswith("runs/{{workflow.name}}/"), key
            if art.get("archive") == {"none": {}} and "." not in key.rsplit("/", 1)[-1]:
                assert key.endswith("/"), f"{key}: a folder stored as files needs a trailing /"


def test_gpu_steps_share_a_semaphore_sized_by_the_cluster(template):
    t = _by_name(template)
    for name in ("train", "eval-first", "eval-vs-previous"):
        res = t[name]["container"]["resources"]
        assert res["limits"]["nvidia.com/gpu"] == res["requests"]["nvidia.com/gpu"] == "1"
        assert t[name]["synchronization"] == {
            "semaphores": [{"configMapKeyRef": {"name": "quantum-slm-gpus", "key": "gpus"}}]}
        assert t[name]["activeDeadlineSeconds"] > 0
    assert not any("synchronization" in t[name] for name in ("curate", "publish", "spec", "verdict"))


def test_gpu_steps_ask_for_host_memory_a_16_gb_workstation_has(template):
    """Issue 23: train asked the scheduler for 16 GiB of host memory; on a 16 GB workstation that pod never
    schedules, and it still holds the only place in the GPU semaphore, so every other build waits behind it."""
    workstation_gib, cluster_gib = 16, 2  # k3s, MinIO and Argo's controller and server
    for name, t in _by_name(template).items():
        res = t.get("container", {}).get("resources", {})
        if "nvidia.com/gpu" in res.get("limits", {}):
            request = res["requests"]["memory"]
            assert request.endswith("Gi") and int(request[:-2]) <= workstation_gib - cluster_gib - 8, (name, request)


def test_retries_resume_training_and_never_upload_checkpoints(template):
    t = _by_name(template)
    assert t["train"]["retryStrategy"]["retryPolicy"] == "OnError"  # infrastructure failures only
    # The checkpoints live on the per-run volume, outside the uploaded adapter folder, and the volume outlives a
    # failed run (deleted only on success), so a retry or `argo retry` resumes instead of starting over.
    assert {"name": "train-state", "mountPath": "/state"} in t["train"]["container"]["volumeMounts"]
    assert [c["metadata"]["name"] for c in template["spec"]["volumeClaimTemplates"]] == ["train-state"]
    assert template["spec"]["volumeClaimGC"] == {"strategy": "OnWorkflowSuccess"}
    adapter = next(a for a in t["train"]["outputs"]["artifacts"] if a["name"] == "adapter")
    checkpoints = t["train"]["container"]["args"][t["train"]["container"]["args"].index("--checkpoints") + 1]
    assert not checkpoints.startswith(adapter["path"] + "/")
    for name in ("curate", "eval-first"):
        assert t[name]["retryStrategy"]["backoff"]["duration"]
    assert t["eval-first"]["retryStrategy"]["expression"] == f"asInt(lastRetry.exitCode) != {GATE_FAILED}"
    tasks = {task["name"]: task for task in t["build"]["dag"]["tasks"]}
    assert tasks["publish"]["depends"] == "eval.Succeeded || eval.Failed"
    assert tasks["publish"]["when"] == "{{tasks.eval.exitCode}} == 0 || {{tasks.eval.exitCode}} == 3"
    assert tasks["verdict"]["depends"] == "publish.Succeeded"  # a bare name also runs it when publish is Skipped


def _phases(template, **ran) -> dict[str, str]:
    """Every task of the build DAG Succeeded unless given; the other branch's eval Skipped, its later tasks Omitted."""
    tasks = [task["name"] for task in _by_name(template)["build"]["dag"]["tasks"]]
    phases = {name: "Succeeded" for name in tasks} | {"checkout": "Skipped", "eval": "Skipped",
                                                      "publish": "Omitted", "verdict": "Omitted"}
    return phases | {k.replace("_", "-"): v for k, v in ran.items()}


def test_a_failed_gate_fails_the_workflow_after_the_build_is_published(template):
    """Argo decides a DAG's phase by its last tasks (controller dag.go): publish handles eval's exit 3, so without
    the verdict step after it a failed gate ended the workflow Succeeded."""
    tasks = _by_name(template)["build"]["dag"]["tasks"]
    assert local_run.dag_phase(tasks, _phases(template)) == "Succeeded"
    gate_failed = _phases(template, eval_first="Failed", verdict_first="Failed")  # eval exit 3, verdict exit 3
    assert local_run.dag_phase(tasks, gate_failed) == "Failed"
    without_verdict = [task for task in tasks if not task["name"].startswith("verdict")]
    assert local_run.dag_phase(without_verdict, gate_failed) == "Succeeded"  # the defect this step fixes
    broken = _phases(template, eval_first="Failed", publish_first="Skipped", verdict_first="Omitted")
    assert local_run.dag_phase(tasks, broken) == "Failed"  # eval broke: nothing published, the run failed


def test_the_workflow_status_holds_the_headline_not_the_whole_report(template):
    params = [(t["name"], p) for t in template["spec"]["templates"] for p in t.get("outputs", {}).get("parameters", [])]
    assert [(name, p["name"], p["valueFrom"]["path"]) for name, p in params if p.get("globalName")] == [
        ("verdict", "headline", "/out/headline.json"), ("verdict", "gate", "/out/gate.txt")]
    assert not any(p["valueFrom"]["path"].endswith("metrics.json") for _, p in params)


def test_ui_and_housekeeping(template):
    spec = template["spec"]
    assert spec["podGC"]["strategy"] == "OnPodSuccess" and spec["ttlStrategy"]["secondsAfterSuccess"] > 0
    assert spec["archiveLogs"] is True and spec["activeDeadlineSeconds"] > 0
    assert {m["name"] for m in spec["metrics"]["prometheus"]} == {"qslm_build_duration_seconds",
                                                                 "qslm_build_failed_total"}
    verdict = _by_name(template)["verdict"]
    assert {m["name"] for m in verdict["metrics"]["prometheus"]} == {"qslm_eval_concept_recall",
                                                                     "qslm_eval_similarity", "qslm_gate_failed_total"}
    evaluation = _by_name(template)["eval-vs-previous"]
    outputs = {a["name"]: a for a in evaluation["outputs"]["artifacts"]}
    assert outputs["report-html"]["archive"] == {"none": {}} and outputs["report-html"]["s3"]["key"].endswith(".html")
    assert all(p.get("description") for p in spec["arguments"]["parameters"])


@pytest.mark.parametrize("name", ["template", "push"])
def test_every_step_meets_the_conditions_of_a_real_cluster(name, request):
    """What lint checks beyond references: clean on both templates (the faults below are each caught)."""
    rendered = request.getfixturevalue(name)
    assert lint(rendered) == []
    for t in rendered["spec"]["templates"]:
        if "container" in t:
            assert t["container"]["imagePullPolicy"] == "IfNotPresent"
            assert t["container"]["securityContext"]["readOnlyRootFilesystem"] is True
            assert {"name": "HOME", "value": "/tmp"} in t["container"]["env"]  # caches under ~ land on /tmp
    assert rendered["spec"]["securityContext"] == {"fsGroup": 10001, "runAsGroup": 10001, "runAsNonRoot": True,
                                                   "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}


def _drop_volume(t: dict, name: str) -> None:
    t["volumes"] = [v for v in t["volumes"] if v["name"] != name]
    t["container"]["volumeMounts"] = [m for m in t["container"]["volumeMounts"] if m["name"] != name]


@pytest.mark.parametrize("fault, expected", [
    # the two blockers the review found: outputs where uid 10001 cannot write, inputs it cannot read
    (lambda t: _drop_volume(_by_name(t)["curate"], "out"), "output /out/dataset is on no volume"),
    (lambda t: _by_name(t)["eval-first"]["inputs"]["artifacts"][1].pop("mode"), "input artifact dataset needs mode"),
    (lambda t: _by_name(t)["train"]["inputs"]["artifacts"][1].update(mode=0o700), "input artifact dataset needs mode"),
    (lambda t: t["spec"].pop("securityContext"), "runAsNonRoot must be true"),
    (lambda t: t["spec"]["securityContext"].pop("seccompProfile"), "seccompProfile must be RuntimeDefault"),
    (lambda t: _by_name(t)["publish"]["container"]["securityContext"].pop("capabilities"), "drop must include ALL"),
    (lambda t: _by_name(t)["publish"]["container"]["securityContext"].update(readOnlyRootFilesystem=False),
     "readOnlyRootFilesystem must be true"),
    (lambda t: _by_name(t)["train"]["container"].pop("imagePullPolicy"), "imagePullPolicy must be IfNotPresent"),
    (lambda t: _by_name(t)["curate"]["volumes"].append({"name": "host", "hostPath": {"path": "/data"}}),
     "volume host of type hostPath is not allowed"),
])
def test_lint_catches_what_a_real_cluster_refuses(template, fault, expected):
    bad = copy.deepcopy(template)
    fault(bad)
    assert any(expected in p for p in lint(bad)), lint(bad)


@pytest.mark.parametrize("modules, forbidden", [
    # orchestration never imports ML code
    ("workflows.pipeline, workflows.push, workflows.render, workflows.submit, workflows.emulator.lint, workflows.emulator.run",
     ("torch", "transformers", "peft", "jobs.curate", "jobs.train", "jobs.eval")),
    # the steps that run inside the curate image, which has jobs.core and no Hera
    ("workflows.trigger, workflows.verdict", ("hera", "requests", "torch", "workflows.pipeline", "workflows.steps",
                                              "jobs.curate")),
])
def test_workflow_modules_import_only_what_their_place_has(modules, forbidden):
    code = (f"import sys, {modules}; bad = sorted(m for m in sys.modules "
            f"if any(m == f or m.startswith(f + '.') for f in {forbidden!r})); print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_template_digest_tracks_the_definition():
    a, b = pipeline_template(), pipeline_template(namespace="elsewhere")
    key = "quantum-slm/definition-sha256"
    assert a.annotations[key] == b.annotations[key]  # the namespace is not part of the definition
    assert push_template().annotations[key] != a.annotations[key]


def test_the_dag_runs_the_stages_in_the_order_the_local_build_does(template):
    """workflows/stages.py STAGES is the one order: every stage's command is a task of the DAG, and each task
    comes after every stage listed before it (the local build runs them in that order). A stage may be two
    alternative tasks (eval-first, eval-vs-previous): a later task waits for one of them. The DAG runs index beside
    train (neither reads the other's output), so train need not wait for it."""
    from workflows.stages import STAGES

    templates = _by_name(template)
    dag = next(t for t in templates.values() if "dag" in t)
    tasks = {t["name"]: t for t in dag["dag"]["tasks"]}
    by_module: dict[str, list[str]] = {}
    for name, task in tasks.items():
        container = templates[task["template"]].get("container", {})
        if container.get("command", [])[:2] == ["python", "-m"]:
            by_module.setdefault(container["command"][2], []).append(name)
    order = [by_module[module] for module in STAGES.values()]
    assert all(order), f"a stage is not in the DAG: {dict(zip(STAGES, order))}"
    side_by_side = {("train", "index")}
    names = list(STAGES)
    for i, later in enumerate(order):
        for task in later:
            for j, earlier in enumerate(order[:i]):
                if (names[i], names[j]) not in side_by_side:
                    assert set(earlier) & ancestors(task, tasks), f"{task} does not wait for {' or '.join(earlier)}"
