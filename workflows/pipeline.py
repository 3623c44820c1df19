"""The build pipeline as one Argo WorkflowTemplate, defined with Hera: checkout -> curate -> train -> eval -> publish.

    from workflows.pipeline import pipeline_template, run_workflow
    pipeline_template().to_yaml()                      # what `make render` commits to workflows/rendered/

Each run is a Workflow that references this template (`run_workflow`), with the build tag, the git commit and the
image tag as parameters. Every task runs one stage image with exactly the stage's command (docs/architecture.md).

How a build's inputs reach the pods at its exact commit: `data/` at that commit travels as one tar.gz under
runs/<run>/checkout/data.tgz in the artifact repository. `make submit` uploads it (git archive of the commit),
or, for a git-triggered run (`git-repo` set), the checkout task clones the commit with Argo's git artifact and
saves data/ there. Every stage mounts it over the image's own data/ folder, so the spec, the documents and the
eval suite are the commit's, and the spec's repo-relative paths resolve to them unchanged.

No network and no ML code here: this module only builds Hera objects.
"""

from __future__ import annotations

import hashlib
import json

from hera.workflows import (
    DAG, Artifact, Container, Counter, EmptyDirVolume, Env, ExistingVolume, Gauge, GitArtifact, Label,
    NoneArchiveStrategy, Parameter, Resources, RetryStrategy, S3Artifact, SecretEnv, Task, Volume, Workflow,
    WorkflowTemplate,
)
from hera.workflows.models import (
    ArtifactRepositoryRef, Backoff, ConfigMapEnvSource, EnvFromSource, LabelValueFrom, Mutex, PodGC,
    SecretKeySelector, Synchronization, Toleration, TTLStrategy, ValueFrom, VolumeClaimGC, WorkflowMetadata,
    WorkflowTemplateRef,
)

from jobs.core.spec import GATE_FAILED, HEADLINE

NAME = "quantum-slm"  # the WorkflowTemplate; the chart installs it under this name
APP_ROOT = "/app"  # where the images keep the code (REPO_ROOT of jobs.core.spec); data/ is mounted over APP_ROOT/data
DATA = f"{APP_ROOT}/data"
SPEC = DATA + "/builds/{{workflow.parameters.spec}}.yaml"
RUN = "runs/{{workflow.name}}"  # intermediates of this run: runs/<run-id>/<stage>/...
DATA_KEY = RUN + "/checkout/data.tgz"

# Names of objects the chart creates (charts/quantum-slm); the local runner provides the same ones.
SERVICE_ACCOUNT = "quantum-slm-workflow"
ARTIFACT_REPOSITORIES = "artifact-repositories"  # ConfigMap; key below
ARTIFACT_REPOSITORY_KEY = "minio"
STORE_CONFIG = "quantum-slm-store"  # ConfigMap: QSLM_STORE, S3_ENDPOINT_URL, AWS_DEFAULT_REGION
STORE_SECRET = "quantum-slm-store"  # Secret: accesskey, secretkey
GIT_SECRET = "quantum-slm-git"  # Secret: username, password (empty for a public repository)
MODELS_CLAIM = "quantum-slm-models"  # PVC: Hugging Face cache and the tiny-model cache, kept between runs

DIGEST_ANNOTATION = "quantum-slm/definition-sha256"
GAUGES = HEADLINE[:2]  # headline scores exported as Prometheus gauges
HOUR = 3600

ARGUMENTS = [
    Parameter(name="tag", description="Build tag: the run publishes builds/<tag>/ in the store"),
    Parameter(name="spec", description="Build spec name: data/builds/<spec>.yaml at the commit (usually the tag)"),
    Parameter(name="image-tag", description="Tag of the stage images qslm-{curate,train,eval}"),
    Parameter(name="image-prefix", value="", description="Registry prefix of the images, ending in '/' "
                                                         "(empty: images loaded into k3s by `make images`)"),
    Parameter(name="git-commit", value="unknown", description="Commit whose data/ this run builds"),
    Parameter(name="git-dirty", value="false", enum=["true", "false"],
              description="Whether data/ had uncommitted changes when submitted"),
    Parameter(name="git-repo", value="", description="Clone URL; set by the git trigger, empty when "
                                                     "make submit uploaded data/ itself"),
    Parameter(name="data-hash", value="", description="git tree hash of data/ at the commit"),
    Parameter(name="previous", value="", description="Tag of the build to compare with (empty: first build)"),
]


def _image(stage: str) -> str:
    # images/build.py names them qslm-<stage>:<tag>, optionally under a registry
    return "{{workflow.parameters.image-prefix}}qslm-" + stage + ":{{workflow.parameters.image-tag}}"


def _dir(name: str, path: str, key: str) -> S3Artifact:
    """A folder stored as plain files under key/ (archive none): browsable and previewable in the UI."""
    return S3Artifact(name=name, path=path, key=key + "/", archive=NoneArchiveStrategy())


def _data_input() -> S3Artifact:
    # data/ at the build's commit, over the image's own copy; a tar.gz with one top folder `data` unpacks to path.
    return S3Artifact(name="data", path=DATA, key=DATA_KEY)


def _store_env() -> list:
    return [
        SecretEnv(name="AWS_ACCESS_KEY_ID", secret_name=STORE_SECRET, secret_key="accesskey"),
        SecretEnv(name="AWS_SECRET_ACCESS_KEY", secret_name=STORE_SECRET, secret_key="secretkey"),
    ]


def _cache() -> dict:
    """The model cache volume at the images' /cache (QSLM_CACHE; HF_HOME=/cache/huggingface), kept between runs.
    The images default to offline; here the hub may be reached, so the first build fills the cache."""
    return dict(volumes=[ExistingVolume(name="models", claim_name=MODELS_CLAIM, mount_path="/cache")],
                env=[Env(name="HF_HUB_OFFLINE", value="0")])


def _gpu(memory_gib: int, deadline_s: int, volumes: tuple = ()) -> dict:
    """What a GPU step needs on the single k3s node: the card, its runtime, the taint, shared memory, the mutex."""
    return dict(
        resources=Resources(gpus=1, cpu_request="2", memory_request=f"{memory_gib}Gi",
                            memory_limit=f"{memory_gib + 8}Gi"),  # the limit leaves room for the 2 GiB /dev/shm
        pod_spec_patch='{"runtimeClassName": "nvidia"}',  # Argo templates have no runtimeClassName field
        tolerations=[Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        # DataLoader workers use /dev/shm; the container default (64 MiB) is too small. Counts against the limit.
        volumes=[EmptyDirVolume(name="dshm", mount_path="/dev/shm", medium="Memory", size_limit="2Gi"),
                 *_cache()["volumes"], *volumes],
        synchronization=Synchronization(mutexes=[Mutex(name="gpu")]),  # one GPU step at a time on the node
        active_deadline_seconds=deadline_s,
        env=_cache()["env"],
    )


def _backoff() -> Backoff:
    return Backoff(duration="30s", factor="2", max_duration="10m")


def checkout() -> Container:
    # Only for git-triggered runs: Argo clones the commit; this step saves its data/ where every stage reads it.
    return Container(
        name="checkout",
        image=_image("curate"),
        command=["python", "-c",
                 "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
                 "sys.exit(0 if p.is_file() else f'{p}: no such build spec at this commit')"],
        args=["/src/data/builds/{{workflow.parameters.spec}}.yaml"],
        inputs=[GitArtifact(name="repo", path="/src", repo="{{workflow.parameters.git-repo}}",
                            revision="{{workflow.parameters.git-commit}}",
                            username_secret=SecretKeySelector(name=GIT_SECRET, key="username", optional=True),
                            password_secret=SecretKeySelector(name=GIT_SECRET, key="password", optional=True))],
        outputs=[S3Artifact(name="data", path="/src/data", key=DATA_KEY)],
        retry_strategy=RetryStrategy(limit="3", retry_policy="Always", backoff=_backoff()),
        active_deadline_seconds=10 * 60,
    )


def curate() -> Container:
    return Container(
        name="curate",
        image=_image("curate"),
        command=["python", "-m", "jobs.curate"],
        args=["--spec", SPEC, "--out", "/out/dataset"],  # sources: the spec's, inside the mounted data/
        inputs=[_data_input()],
        outputs=[_dir("dataset", "/out/dataset", RUN + "/curate/dataset")],
        resources=Resources(cpu_request="1", memory_request="2Gi", memory_limit="6Gi"),
        retry_strategy=RetryStrategy(limit="2", retry_policy="Always", backoff=_backoff()),
        active_deadline_seconds=2 * HOUR,
        **_cache(),
    )


def train() -> Container:
    return Container(
        name="train",
        image=_image("train"),
        command=["python", "-m", "jobs.train"],
        args=["--spec", SPEC, "--dataset", "/in/dataset", "--out", "/out/adapter"],
        inputs=[_data_input(), Artifact(name="dataset", path="/in/dataset")],
        outputs=[_dir("adapter", "/out/adapter", RUN + "/train/adapter")],
        # Only infrastructure failures (pod deleted, node lost, evicted) are retried: a failing training run
        # (OOM, bad data) would fail again. Checkpoints live on a per-run volume, so a retry resumes.
        retry_strategy=RetryStrategy(limit="3", retry_policy="OnError", backoff=Backoff(duration="1m", factor="2")),
        **_gpu(memory_gib=16, deadline_s=8 * HOUR,
               volumes=(Volume(name="train-state", size="5Gi", mount_path="/out/adapter"),)),
    )


def _score_metrics() -> list:
    # Gauges of the headline scores, read out of metrics.json (the eval job's machine-readable report).
    gauges = [Gauge(name="qslm_eval_" + m, help=f"Headline {m} of the build's adapter", realtime=False,
                    value="{{=jsonpath(outputs.parameters.metrics, '$.headline." + m + "')}}",
                    labels=[Label(key="tag", value="{{workflow.parameters.tag}}")],
                    when="{{exitCode}} == 0 || {{exitCode}} == " + str(GATE_FAILED))
              for m in GAUGES]
    return gauges + [Counter(name="qslm_gate_failed_total", help="Builds whose eval gate failed", value="1",
                             when="{{exitCode}} == " + str(GATE_FAILED))]


def eval_(compare: bool) -> Container:
    """The eval step; `compare` adds the previous build's scores (--previous), for the regression checks."""
    args = ["--spec", SPEC, "--dataset", "/in/dataset", "--adapter", "/in/adapter", "--out", "/out/report"]
    inputs = [_data_input(), Artifact(name="dataset", path="/in/dataset"), Artifact(name="adapter", path="/in/adapter")]
    if compare:
        args += ["--previous", "/in/previous"]
        inputs.append(S3Artifact(name="previous", path="/in/previous/metrics.json",
                                 key="builds/{{workflow.parameters.previous}}/report/metrics.json"))
    return Container(
        name="eval-vs-previous" if compare else "eval-first",
        image=_image("eval"),
        command=["python", "-m", "jobs.eval"],
        args=args,
        inputs=inputs,
        outputs=[_dir("report", "/out/report", RUN + "/eval/report"),
                 # single files as well, so the UI previews them (HTML sandboxed, JSON rendered)
                 S3Artifact(name="report-html", path="/out/report/report.html", archive=NoneArchiveStrategy(),
                            key=RUN + "/eval/report.html", optional=True),
                 S3Artifact(name="metrics-json", path="/out/report/metrics.json", archive=NoneArchiveStrategy(),
                            key=RUN + "/eval/metrics.json", optional=True),
                 Parameter(name="metrics", global_name="metrics",
                           value_from=ValueFrom(path="/out/report/metrics.json", default="{}")),
                 Parameter(name="gate", global_name="gate",
                           value_from=ValueFrom(path="/out/report/gate.json", default="{}"))],
        # Exit 3 is a verdict (gate failed, report written), not a fault: never retried.
        retry_strategy=RetryStrategy(limit="2", retry_policy="Always", backoff=_backoff(),
                                     expression=f"asInt(lastRetry.exitCode) != {GATE_FAILED}"),
        metrics=_score_metrics(),
        **_gpu(memory_gib=12, deadline_s=3 * HOUR),
    )


def publish() -> Container:
    return Container(
        name="publish",
        image=_image("curate"),  # core only: no torch needed to write the store
        command=["python", "-m", "jobs.core.publish"],
        args=["--spec", SPEC, "--tag", "{{workflow.parameters.tag}}", "--dataset", "/in/dataset",
              "--adapter", "/in/adapter", "--report", "/in/report",
              "--git-commit", "{{workflow.parameters.git-commit}}", "--git-dirty", "{{workflow.parameters.git-dirty}}"],
        inputs=[_data_input(), Artifact(name="dataset", path="/in/dataset"),
                Artifact(name="adapter", path="/in/adapter"), Artifact(name="report", path="/in/report")],
        env=_store_env(),
        env_from=[EnvFromSource(config_map_ref=ConfigMapEnvSource(name=STORE_CONFIG))],
        resources=Resources(cpu_request="500m", memory_request="1Gi", memory_limit="2Gi"),
        # Safe to retry: the manifest is written last and only if absent, so a retry either completes or refuses.
        retry_strategy=RetryStrategy(limit="2", retry_policy="OnError", backoff=_backoff()),
        active_deadline_seconds=HOUR,
    )


def _artifact(task: str, name: str, as_name: str | None = None) -> Artifact:
    return Artifact(name=as_name or name, from_="{{tasks." + task + ".outputs.artifacts." + name + "}}")


def pipeline_template(namespace: str | None = None) -> WorkflowTemplate:
    """The WorkflowTemplate every build runs. Pure: builds objects, talks to nothing."""
    with WorkflowTemplate(
        name=NAME,
        namespace=namespace,
        entrypoint="build",
        annotations={
            "workflows.argoproj.io/title": "quantum-slm build",
            "workflows.argoproj.io/description": "Documents in, an evaluated QLoRA adapter out: curate -> train "
                                                 "(GPU) -> eval (GPU) -> publish to builds/<tag>/ in MinIO",
        },
        labels={"app.kubernetes.io/name": "quantum-slm", "app.kubernetes.io/component": "pipeline"},
        arguments=ARGUMENTS,
        service_account_name=SERVICE_ACCOUNT,
        artifact_repository_ref=ArtifactRepositoryRef(config_map=ARTIFACT_REPOSITORIES, key=ARTIFACT_REPOSITORY_KEY),
        archive_logs=True,  # logs survive pod GC, stored in the artifact repository
        active_deadline_seconds=14 * HOUR,  # the whole build, queueing for the GPU mutex included
        pod_gc=PodGC(strategy="OnPodSuccess", delete_delay_duration="1h"),  # failed pods stay for debugging
        ttl_strategy=TTLStrategy(seconds_after_success=14 * 24 * HOUR, seconds_after_failure=30 * 24 * HOUR),
        volume_claim_gc=VolumeClaimGC(strategy="OnWorkflowCompletion"),  # train's checkpoint volume
        workflow_metadata=WorkflowMetadata(
            labels_from={"quantum-slm/tag": LabelValueFrom(expression="workflow.parameters.tag")}),
        metrics=[
            Gauge(name="qslm_build_duration_seconds", help="Wall time of a whole build", realtime=False,
                  value="{{workflow.duration}}", labels=[Label(key="tag", value="{{workflow.parameters.tag}}"),
                                                         Label(key="status", value="{{workflow.status}}")]),
            Counter(name="qslm_build_failed_total", help="Builds that ended Failed or Error",
                    when="{{workflow.status}} != Succeeded", value="1"),
        ],
    ) as wt:
        first_build = "'{{workflow.parameters.previous}}' == ''"
        with DAG(name="build"):
            Task(name="checkout", template=checkout(), when="'{{workflow.parameters.git-repo}}' != ''")
            Task(name="curate", template=curate(), depends="checkout.Succeeded || checkout.Skipped")
            Task(name="train", template=train(), depends="curate", arguments=[_artifact("curate", "dataset")])
            # Two branches, one of which runs: eval has --previous only when there is a previous build.
            publish_template = publish()
            for compare, (eval_task, publish_task) in ((False, ("eval-first", "publish-first")),
                                                       (True, ("eval", "publish"))):
                Task(name=eval_task, template=eval_(compare), depends="train",
                     when=first_build.replace("==", "!=") if compare else first_build,
                     arguments=[_artifact("curate", "dataset"), _artifact("train", "adapter")])
                # The gate's verdict (exit 3) is published as failed-gate; any other eval failure publishes nothing.
                exit_code = "{{tasks." + eval_task + ".exitCode}}"
                Task(name=publish_task, template=publish_template,
                     depends=f"{eval_task}.Succeeded || {eval_task}.Failed",
                     when=f"{exit_code} == 0 || {exit_code} == {GATE_FAILED}",
                     arguments=[_artifact("curate", "dataset"), _artifact("train", "adapter"),
                                _artifact(eval_task, "report")])
    # A digest of the definition, so `make submit` can tell whether the cluster's copy differs from this code.
    spec = json.dumps(wt.to_dict()["spec"], sort_keys=True).encode()
    wt.annotations[DIGEST_ANNOTATION] = hashlib.sha256(spec).hexdigest()
    return wt


def run_workflow(tag: str, spec: str, image_tag: str, git_commit: str, *, name: str, git_dirty: bool = False,
                 data_hash: str = "", previous: str = "", image_prefix: str = "", git_repo: str = "",
                 namespace: str | None = None) -> Workflow:
    """One build: a Workflow that references the template, with a title and description for the Argo UI."""
    short = git_commit[:8]
    description = "\n".join([
        f"Build **{tag}** from `data/builds/{spec}.yaml` at commit `{short}`" + (" (data/ had local changes)"
                                                                              if git_dirty else ""),
        f"- data/ tree: `{data_hash[:12] or 'unknown'}`",
        f"- images: `{image_prefix}qslm-{{curate,train,eval}}:{image_tag}`",
        f"- compared with: {('build `' + previous + '`') if previous else 'nothing (first build)'}",
    ])
    return Workflow(
        name=name,
        namespace=namespace,
        annotations={"workflows.argoproj.io/title": f"{tag} @ {short}",
                     "workflows.argoproj.io/description": description},
        labels={"quantum-slm/tag": tag, "quantum-slm/commit": short},
        workflow_template_ref=WorkflowTemplateRef(name=NAME),
        arguments=[Parameter(name="tag", value=tag), Parameter(name="spec", value=spec),
                   Parameter(name="image-tag", value=image_tag), Parameter(name="image-prefix", value=image_prefix),
                   Parameter(name="git-commit", value=git_commit),
                   Parameter(name="git-dirty", value="true" if git_dirty else "false"),
                   Parameter(name="git-repo", value=git_repo), Parameter(name="data-hash", value=data_hash),
                   Parameter(name="previous", value=previous)],
    )
