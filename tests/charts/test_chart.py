"""The Helm chart: renders and lints with helm-python-sdk (Helm's own Go code, no helm binary), every rendered
object validates (core kinds with kubernetes-validate, Argo kinds against Argo's schema), and everything the
WorkflowTemplate names exists in the chart."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_python import HelmRenderError
from helm_python.chart import Chart, lint

from workflows import pipeline, render

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "quantum-slm"
SCHEMAS = REPO.parent / "shared" / "schemas"
KUBE = "1.33"  # k3s stable at the time of writing
VALUES = {"minio": {"rootUser": "quantum", "rootPassword": "not-a-real-password"}}
ARGO_KINDS = {"WorkflowTemplate", "WorkflowEventBinding"}


def render_chart(values: dict | None = None) -> dict[str, list[dict]]:
    """{template file: [objects]} for the chart rendered offline."""
    manifests = Chart.load(CHART).render(values if values is not None else VALUES, name="qslm", namespace="builds")
    return {path.split("/templates/", 1)[1]: [d for d in yaml.safe_load_all(text) if d]
            for path, text in manifests.items() if path.endswith(".yaml")}


def objects(rendered: dict[str, list[dict]]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for docs in rendered.values() for o in docs}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return render_chart()


@pytest.fixture(scope="module")
def argo_schema():
    path = SCHEMAS / "argo-workflows.strict.schema.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared Argo schemas live beside the repository)")
    return json.loads(path.read_text())


def test_lint_is_clean():
    report = lint(CHART, VALUES, strict=True, kube_version=f"v{KUBE}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []  # no warnings either


def test_one_kind_per_template_file(rendered):
    for path, docs in rendered.items():
        assert len(docs) <= 1, f"{path} renders {len(docs)} objects"


def test_core_objects_validate_strictly(rendered):
    optional = {"runtimeClass": {"create": True}, "trigger": {"githubWebhookSecret": "example"}}
    checked = 0
    for docs in render_chart(VALUES | optional).values():
        for obj in docs:
            if obj["kind"] in ARGO_KINDS:
                continue
            kubernetes_validate.validate(obj, KUBE, strict=True)
            checked += 1
    assert checked >= 15


def test_argo_objects_validate_against_argo_schema(rendered, argo_schema):
    validator = jsonschema.validators.validator_for(argo_schema)(argo_schema)
    found = {o["kind"] for docs in rendered.values() for o in docs if o["kind"] in ARGO_KINDS}
    assert found == ARGO_KINDS
    for docs in rendered.values():
        for obj in (o for o in docs if o["kind"] in ARGO_KINDS):
            errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(obj)]
            assert errors == [], obj["kind"]


def test_artifact_repository_is_valid_for_argo(rendered, argo_schema):
    cm = objects(rendered)[("ConfigMap", pipeline.ARTIFACT_REPOSITORIES)]
    repo = yaml.safe_load(cm["data"][pipeline.ARTIFACT_REPOSITORY_KEY])
    schema = {"$ref": "#/definitions/io.argoproj.workflow.v1alpha1.ArtifactRepository",
              "definitions": argo_schema["definitions"]}
    jsonschema.validate(repo, schema)
    assert repo["s3"]["bucket"] == "quantum-slm" and repo["archiveLogs"] is True
    assert repo["s3"]["keyFormat"].startswith("runs/{{workflow.name}}/")  # logs land under the run, as intermediates


def test_chart_installs_the_rendered_workflow_template(rendered):
    (wt,) = rendered["workflowtemplate.yaml"]
    assert wt == yaml.safe_load(render.PIPELINE_FILES[0].read_text())


def test_everything_the_pipeline_names_exists(rendered):
    objs = objects(rendered)
    assert ("ServiceAccount", pipeline.SERVICE_ACCOUNT) in objs
    assert ("PersistentVolumeClaim", pipeline.MODELS_CLAIM) in objs
    assert set(objs[("Secret", pipeline.STORE_SECRET)]["stringData"]) == {"accesskey", "secretkey"}
    assert set(objs[("Secret", pipeline.GIT_SECRET)]["stringData"]) == {"username", "password"}
    store = objs[("ConfigMap", pipeline.STORE_CONFIG)]["data"]
    assert store["QSLM_STORE"] == "s3://quantum-slm"
    assert store["S3_ENDPOINT_URL"] == "http://quantum-slm-minio.builds.svc:9000"
    binding = objs[("RoleBinding", pipeline.SERVICE_ACCOUNT)]
    assert binding["subjects"][0]["name"] == pipeline.SERVICE_ACCOUNT
    rules = objs[("Role", pipeline.SERVICE_ACCOUNT)]["rules"]
    assert {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]} in rules


def test_trigger_submits_the_template_with_declared_parameters(rendered):
    (binding,) = rendered["workfloweventbinding.yaml"]
    (wt,) = rendered["workflowtemplate.yaml"]
    declared = {p["name"]: p for p in wt["spec"]["arguments"]["parameters"]}
    given = {p["name"] for p in binding["spec"]["submit"]["arguments"]["parameters"]}
    assert binding["spec"]["submit"]["workflowTemplateRef"]["name"] == wt["metadata"]["name"]
    assert given <= set(declared)
    assert {n for n, p in declared.items() if "value" not in p} <= given  # every required parameter
    assert {"git-repo", "git-commit"} <= given  # the checkout step clones the pushed commit
    assert 'hasPrefix(#, "data/")' in binding["spec"]["event"]["selector"]
    assert render_chart(VALUES | {"trigger": {"enabled": False}})["workfloweventbinding.yaml"] == []


def test_credentials_have_no_defaults():
    with pytest.raises(HelmRenderError, match="minio.rootPassword"):
        render_chart({"minio": {"rootUser": "quantum"}})
    with pytest.raises(HelmRenderError, match="at least 8 characters"):
        render_chart({"minio": {"rootUser": "quantum", "rootPassword": "short"}})


def test_minio_image_is_pinned_and_runs_as_non_root(rendered):
    deploy = objects(rendered)[("Deployment", "quantum-slm-minio")]
    image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "minio/minio:RELEASE.2025-09-07T16-13-09Z"
    assert deploy["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    digest = "sha256:" + "0" * 64
    pinned = objects(render_chart(VALUES | {"minio": VALUES["minio"] | {"image": {"digest": digest}}}))
    assert pinned[("Deployment", "quantum-slm-minio")]["spec"]["template"]["spec"]["containers"][0]["image"] \
        .endswith("@" + digest)


def test_helm_test_hook_checks_the_bucket(rendered):
    (pod,) = rendered["tests/test-store.yaml"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "mc cp" in pod["spec"]["containers"][0]["args"][0]
    job = objects(rendered)[("Job", "quantum-slm-bucket")]
    assert "post-install" in job["metadata"]["annotations"]["helm.sh/hook"]


def test_external_store_without_minio():
    objs = objects(render_chart(VALUES | {"minio": VALUES["minio"] | {"enabled": False},
                                          "store": {"endpoint": "s3.lan:9000", "insecure": False}}))
    assert ("Deployment", "quantum-slm-minio") not in objs
    assert objs[("ConfigMap", pipeline.STORE_CONFIG)]["data"]["S3_ENDPOINT_URL"] == "https://s3.lan:9000"
