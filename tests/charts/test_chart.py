"""The Helm chart: renders and lints with helm-python-sdk (Helm's own Go code, no helm binary), every rendered
object validates (core kinds with kubernetes-validate, Argo kinds against Argo's schema), everything the
WorkflowTemplates name exists in the chart, every pod is admitted under Pod Security "restricted", and the
MinIO scripts work with nothing but `sh` and `mc` (what the MinIO image has)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_python import HelmRenderError
from helm_python.chart import Chart, lint

from tests.charts import fake_mc
from tests.conftest import shared
from workflows import pipeline, push, render, steps
from workflows.emulator.lint import restricted_problems
from workflows.names import IMAGE_TAG

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "quantum-slm"
# The shared Argo schemas live beside the repository (/work/shared), also seen from a worktree (/work/wt/<name>).
SCHEMAS = shared("schemas")
KUBE = "1.33"  # k3s stable at the time of writing
VALUES = {"minio": {"rootUser": "quantum", "rootPassword": "not-a-real-password"},
          "store": {"accessKey": "builds", "secretKey": "also-not-real"}}
ARGO_KINDS = {"WorkflowTemplate", "WorkflowEventBinding"}


def render_chart(values: dict | None = None) -> dict[str, list[dict]]:
    """{template file: [objects]} for the chart rendered offline."""
    manifests = Chart.load(CHART).render(values if values is not None else VALUES, name="qslm", namespace="builds")
    return {path.split("/templates/", 1)[1]: [d for d in yaml.safe_load_all(text) if d]
            for path, text in manifests.items() if path.endswith(".yaml")}


def notes(values: dict) -> str:
    manifests = Chart.load(CHART).render(values, name="qslm", namespace="builds")
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


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
    cm = objects(rendered)[("ConfigMap", steps.ARTIFACT_REPOSITORIES)]
    repo = yaml.safe_load(cm["data"][steps.ARTIFACT_REPOSITORY_KEY])
    schema = {"$ref": "#/definitions/io.argoproj.workflow.v1alpha1.ArtifactRepository",
              "definitions": argo_schema["definitions"]}
    jsonschema.validate(repo, schema)
    assert repo["s3"]["bucket"] == "quantum-slm" and repo["archiveLogs"] is True
    assert repo["s3"]["keyFormat"].startswith("runs/{{workflow.name}}/")  # logs land under the run, as intermediates
    assert repo["s3"]["accessKeySecret"]["name"] == steps.STORE_SECRET  # the bucket's user, not MinIO's root


def test_chart_installs_the_rendered_workflow_templates(rendered):
    (wt,) = rendered["workflowtemplate.yaml"]
    assert wt == yaml.safe_load(render.PIPELINE_FILES[0].read_text())
    (push_wt,) = rendered["workflowtemplate-push.yaml"]
    assert push_wt == yaml.safe_load(render.PUSH_FILES[0].read_text())


def test_everything_the_templates_name_exists(rendered):
    objs = objects(rendered)
    assert ("ServiceAccount", pipeline.SERVICE_ACCOUNT) in objs and ("ServiceAccount", push.SERVICE_ACCOUNT) in objs
    assert ("PersistentVolumeClaim", steps.MODELS_CLAIM) in objs
    assert set(objs[("Secret", steps.STORE_SECRET)]["stringData"]) == {"accesskey", "secretkey"}
    assert set(objs[("Secret", pipeline.GIT_SECRET)]["stringData"]) == {"username", "password"}
    store = objs[("ConfigMap", steps.STORE_CONFIG)]["data"]
    assert store["QSLM_STORE"] == "s3://quantum-slm"
    assert store["S3_ENDPOINT_URL"] == "http://quantum-slm-minio.builds.svc:9000"
    assert objs[("ConfigMap", steps.GPU_SEMAPHORE.name)]["data"] == {steps.GPU_SEMAPHORE.key: "1"}
    assert objs[("ConfigMap", push.TRIGGER_CONFIG)]["data"] == {"QSLM_TRIGGER_SPECS": "v1",
                                                                "QSLM_TRIGGER_BRANCH": "main"}
    for account in (pipeline.SERVICE_ACCOUNT, push.SERVICE_ACCOUNT):
        assert objs[("RoleBinding", account)]["subjects"][0]["name"] == account
        assert {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]} \
            in objs[("Role", account)]["rules"]
    # only the push workflow may start builds (kubectl apply), not the build pods
    assert {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["get", "create", "patch"]} \
        in objs[("Role", push.SERVICE_ACCOUNT)]["rules"]
    assert len(objs[("Role", pipeline.SERVICE_ACCOUNT)]["rules"]) == 1


def test_the_gpu_semaphore_is_the_clusters_gpu_count():
    objs = objects(render_chart(VALUES | {"gpus": 4}))
    assert objs[("ConfigMap", "quantum-slm-gpus")]["data"]["gpus"] == "4"


def test_a_tracking_uri_reaches_the_build_pods_as_mlflows_own_variable(rendered):
    store = objects(render_chart(VALUES | {"tracking": {"uri": "http://mlflow.team:5000"}}))[
        ("ConfigMap", "quantum-slm-store")]["data"]
    assert store["MLFLOW_TRACKING_URI"] == "http://mlflow.team:5000"
    assert "MLFLOW_TRACKING_URI" not in objects(rendered)[("ConfigMap", "quantum-slm-store")]["data"]


def test_trigger_submits_the_push_template_with_the_payload(rendered):
    (binding,) = rendered["workfloweventbinding.yaml"]
    (push_wt,) = rendered["workflowtemplate-push.yaml"]
    declared = {p["name"]: p for p in push_wt["spec"]["arguments"]["parameters"]}
    given = {p["name"]: p["valueFrom"]["event"] for p in binding["spec"]["submit"]["arguments"]["parameters"]}
    assert binding["spec"]["submit"]["workflowTemplateRef"]["name"] == push.NAME == push_wt["metadata"]["name"]
    assert given == {"payload": "payload", "image-tag": f'"{IMAGE_TAG}"', "image-prefix": '""'}
    assert {n for n, p in declared.items() if "value" not in p} <= set(given) <= set(declared)
    assert 'startsWith "data/"' in binding["spec"]["event"]["selector"]
    off = render_chart(VALUES | {"trigger": {"enabled": False}})
    assert off["workfloweventbinding.yaml"] == off["workflowtemplate-push.yaml"] == off["configmap-trigger.yaml"] == []


def test_credentials_have_no_defaults():
    with pytest.raises(HelmRenderError, match="minio.rootPassword"):
        render_chart({"minio": {"rootUser": "quantum"}, "store": VALUES["store"]})
    with pytest.raises(HelmRenderError, match="at least 8 characters"):
        render_chart({"minio": {"rootUser": "quantum", "rootPassword": "short"}, "store": VALUES["store"]})
    with pytest.raises(HelmRenderError, match="store.secretKey"):
        render_chart({"minio": VALUES["minio"], "store": {"accessKey": "builds"}})


def test_existing_secrets_keep_passwords_out_of_helm():
    """secrets.existing: no credential in the values, none rendered; the objects still name the fixed Secrets."""
    objs = objects(render_chart({"secrets": {"existing": True}}))
    assert not [k for k in objs if k[0] == "Secret" and k[1] in ("quantum-slm-store", "quantum-slm-minio-root")]
    env = objs[("Deployment", "quantum-slm-minio")]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env} == {"quantum-slm-minio-root"}


def test_the_build_pods_never_hold_minios_root_user(rendered):
    objs = objects(rendered)
    root = objs[("Secret", "quantum-slm-minio-root")]["stringData"]
    store = objs[("Secret", steps.STORE_SECRET)]["stringData"]
    assert root["rootUser"] != store["accesskey"] and root["rootPassword"] != store["secretkey"]
    readers = {name for (kind, name), o in objs.items() if "quantum-slm-minio-root" in json.dumps(o)
               and kind not in ("Secret",)}
    assert readers == {"quantum-slm-minio", "quantum-slm-bucket"}  # MinIO itself and the bucket job


def test_the_bucket_users_policy_covers_the_bucket_and_nothing_else(rendered):
    policy = json.loads(objects(rendered)[("ConfigMap", "quantum-slm-bucket-policy")]["data"]["bucket.json"])
    resources = {r for st in policy["Statement"] for r in st["Resource"]}
    assert resources == {"arn:aws:s3:::quantum-slm", "arn:aws:s3:::quantum-slm/*"}
    actions = {a for st in policy["Statement"] for a in st["Action"]}
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket"} <= actions
    assert not any(a.startswith("admin:") or a in ("s3:*", "s3:CreateBucket", "s3:DeleteBucket") for a in actions)


def _pods(rendered) -> list[tuple[str, dict]]:
    out = []
    for path, docs in rendered.items():
        for o in docs:
            spec = {"Pod": lambda o: o["spec"], "Job": lambda o: o["spec"]["template"]["spec"],
                    "Deployment": lambda o: o["spec"]["template"]["spec"]}.get(o["kind"])
            if spec:
                out.append((path, spec(o)))
    return out


def test_every_pod_of_the_chart_is_admitted_under_restricted(rendered):
    pods = _pods(rendered)
    assert {p for p, _ in pods} == {"minio-deployment.yaml", "minio-bucket-job.yaml", "tests/test-store.yaml"}
    for path, spec in pods:
        assert restricted_problems(path, spec, spec["containers"], spec.get("volumes", [])) == []
    bad = json.loads(json.dumps(pods[0][1]))
    bad["securityContext"].pop("seccompProfile")
    assert restricted_problems("x", bad, bad["containers"], []) != []


def _script(rendered, path: str) -> tuple[str, dict]:
    (obj,) = rendered[path]
    spec = obj["spec"]["template"]["spec"] if obj["kind"] == "Job" else obj["spec"]
    container = spec["containers"][0]
    assert container["command"] == ["sh", "-ec"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    return container["args"][0], env


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_minio_scripts_need_only_sh_and_mc_and_are_idempotent(rendered, tmp_path, shell):
    """The MinIO image is built on ubi-micro: no grep, no other tools. Both scripts run with only `mc` on PATH
    (any other command would fail: not found); the bucket job twice makes the bucket, the limited user and the
    expiry rule once each; `helm test` then writes and reads as that user, and cannot make another bucket."""
    state = tmp_path / "mc.json"
    fake_mc.install(tmp_path / "bin", state, "quantum", "not-a-real-password")
    policy = tmp_path / "bucket.json"
    policy.write_text(objects(rendered)[("ConfigMap", "quantum-slm-bucket-policy")]["data"]["bucket.json"])
    secrets = {"S3_ENDPOINT_URL": "http://quantum-slm-minio.builds.svc:9000", "ROOT_USER": "quantum",
               "ROOT_PASSWORD": "not-a-real-password", "ACCESS_KEY": "builds", "SECRET_KEY": "also-not-real"}

    def run(path: str) -> subprocess.CompletedProcess:
        script, env = _script(rendered, path)
        env = env | secrets | {"PATH": str(tmp_path / "bin"), "POLICY_FILE": str(policy)}
        return subprocess.run([shell, "-ec", script], env=env, capture_output=True, text=True, timeout=60)

    for attempt in (1, 2):
        job = run("minio-bucket-job.yaml")
        assert job.returncode == 0, f"attempt {attempt}: {job.stdout}{job.stderr}"
    s = json.loads(state.read_text())
    assert s["buckets"] == ["quantum-slm"] and s["users"] == {"builds": "also-not-real"}
    assert s["attached"] == {"builds": ["quantum-slm-bucket"]} and s["rules"] == [{"prefix": "runs/", "days": 30}]
    test = run("tests/test-store.yaml")
    assert test.returncode == 0, test.stdout + test.stderr
    assert "store ok" in test.stdout and json.loads(state.read_text())["objects"] == {}


def test_helm_test_fails_when_the_store_user_is_not_limited(rendered, tmp_path):
    state = tmp_path / "mc.json"
    fake_mc.install(tmp_path / "bin", state, "builds", "also-not-real", buckets=("quantum-slm",))  # the pods hold root
    script, env = _script(rendered, "tests/test-store.yaml")
    env |= {"PATH": str(tmp_path / "bin"), "S3_ENDPOINT_URL": "http://m:9000", "ACCESS_KEY": "builds",
            "SECRET_KEY": "also-not-real"}
    proc = subprocess.run(["/bin/sh", "-ec", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "could create a bucket" in proc.stdout


def test_submitter_can_read_logs_and_artifacts_but_not_change_templates(rendered):
    rules = objects(rendered)[("Role", "quantum-slm-submitter")]["rules"]
    by = {(tuple(r["apiGroups"]), tuple(r["resources"])): r for r in rules}
    assert by[(("",), ("pods/log",))]["verbs"] == ["get"]
    assert by[(("",), ("secrets",))] == {"apiGroups": [""], "resources": ["secrets"],
                                         "resourceNames": [steps.STORE_SECRET], "verbs": ["get"]}
    assert set(by[(("argoproj.io",), ("workflowtemplates",))]["verbs"]) == {"get", "list"}


MINIO_DIGEST = "sha256:14cea493d9a34af32f524e538b8346cf79f3321eff8e708c1e2960462bd8936e"


def test_minio_image_is_pulled_from_quay_by_digest_and_runs_as_non_root(rendered):
    """Blocker 4: Docker Hub no longer serves minio/minio (removed in September 2026); Quay serves the pinned release
    under this digest. Every pod of the chart that runs MinIO or mc pulls exactly it."""
    objs = objects(rendered)
    deploy = objs[("Deployment", "quantum-slm-minio")]
    pinned = f"quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z@{MINIO_DIGEST}"
    pods = {"minio": deploy["spec"]["template"]["spec"], "bucket job": objs[("Job", "quantum-slm-bucket")]["spec"]
            ["template"]["spec"], "helm test": objs[("Pod", "quantum-slm-test-store")]["spec"]}
    for what, spec in pods.items():
        assert [c["image"] for c in spec["containers"]] == [pinned], what
    assert deploy["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    values = yaml.safe_load((CHART / "values.yaml").read_text())["minio"]["image"]
    assert values["registry"] == "quay.io" and re.fullmatch(r"sha256:[0-9a-f]{64}", values["digest"])
    mirror = {"registry": "registry.lan:5000", "repository": "mirror/minio", "tag": "", "digest": MINIO_DIGEST}
    moved = objects(render_chart(VALUES | {"minio": VALUES["minio"] | {"image": mirror}}))
    assert moved[("Deployment", "quantum-slm-minio")]["spec"]["template"]["spec"]["containers"][0]["image"] == \
        f"registry.lan:5000/mirror/minio@{MINIO_DIGEST}"
    mc = {"registry": "quay.io", "repository": "minio/mc", "tag": "RELEASE.2025-08-13T08-35-41Z",
          "digest": "sha256:a7fe349ef4bd8521fb8497f55c6042871b2ae640607cf99d9bede5e9bdf11727"}
    client = objects(render_chart(VALUES | {"minio": VALUES["minio"] | {"clientImage": mc}}))
    assert client[("Job", "quantum-slm-bucket")]["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z@" + mc["digest"]


def test_helm_test_hook_checks_the_bucket(rendered):
    (pod,) = rendered["tests/test-store.yaml"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    job = objects(rendered)[("Job", "quantum-slm-bucket")]
    assert "post-install" in job["metadata"]["annotations"]["helm.sh/hook"]


def test_external_store_without_minio():
    values = VALUES | {"minio": VALUES["minio"] | {"enabled": False},
                       "store": VALUES["store"] | {"endpoint": "s3.lan:9000", "insecure": False}}
    objs = objects(render_chart(values))
    assert ("Deployment", "quantum-slm-minio") not in objs and ("Secret", "quantum-slm-minio-root") not in objs
    assert objs[("ConfigMap", steps.STORE_CONFIG)]["data"]["S3_ENDPOINT_URL"] == "https://s3.lan:9000"
    text = notes(values)
    assert "port-forward svc/quantum-slm-minio" not in text and "S3_ENDPOINT_URL=https://s3.lan:9000" in text
    with pytest.raises(HelmRenderError, match="set store.endpoint"):
        render_chart(VALUES | {"minio": VALUES["minio"] | {"enabled": False}})
    # first-class: no MinIO image anywhere, nothing that waits on MinIO, the store's Secret still there
    assert "minio/minio" not in json.dumps(list(objs.values())) and ("Job", "quantum-slm-bucket") not in objs
    assert set(objs[("Secret", steps.STORE_SECRET)]["stringData"]) == {"accesskey", "secretkey"}
    existing = objects(render_chart({"secrets": {"existing": True}, "minio": {"enabled": False},
                                     "store": {"endpoint": "s3.lan:9000"}}))
    assert not {("Secret", steps.STORE_SECRET), ("Secret", "quantum-slm-minio-root")} & set(existing)
    assert ("PersistentVolumeClaim", "quantum-slm-minio") not in existing
    report = lint(CHART, values, strict=True, kube_version=f"v{KUBE}.0")
    assert report["errors"] == []


def test_notes_say_how_to_reach_a_stock_argo_server(rendered):
    text = notes(VALUES)
    assert "ARGO_INSECURE_SKIP_VERIFY=true" in text and "port-forward svc/quantum-slm-minio 9000" in text
    assert "get secret quantum-slm-store" in text  # the bucket user's credentials, from the cluster


def test_the_model_cache_can_be_shared_across_gpu_nodes():
    objs = objects(render_chart(VALUES | {"models": {"accessMode": "ReadWriteMany", "storageClassName": "nfs",
                                                     "size": "20Gi"}}))
    assert objs[("PersistentVolumeClaim", steps.MODELS_CLAIM)]["spec"]["accessModes"] == ["ReadWriteMany"]
