"""The build pipeline as one Argo WorkflowTemplate, defined with Hera: spec -> curate -> train -> eval -> publish.

    from workflows.pipeline import pipeline_template, run_workflow
    pipeline_template().to_yaml()                      # what `make render` commits to workflows/rendered/

Each run is a Workflow that references this template (`run_workflow`), with the build tag, the git commit and the
image tag as parameters. Every task is one `stage()`: one stage image running exactly the stage's command
(docs/architecture.md), under the conditions of a real cluster that `workflows/emulator/run.py` reproduces.

How a build's inputs reach the pods at its exact commit: `data/` at that commit travels as one tar.gz under
runs/<run>/checkout/data.tgz in the artifact repository. `make submit` uploads it (git archive of the commit),
or, for a git-triggered run (`git-repo` set), the checkout task clones the commit with Argo's git artifact and
saves data/ there. Every stage mounts it over the image's own data/ folder, so the spec, the documents and the
eval suite are the commit's, and the spec's repo-relative paths resolve to them unchanged. The first step after
that loads and validates the spec (`python -m jobs.core.spec`), before any other work.

No network and no ML code here: this module only builds Hera objects.
"""

from __future__ import annotations

from hera.workflows import (
    DAG, Artifact, Container, Counter, Gauge, GitArtifact, Label, NoneArchiveStrategy, Parameter, Resources,
    RetryStrategy, S3Artifact, Task, Volume, Workflow, WorkflowTemplate,
)
from hera.workflows.models import (
    Backoff, LabelValueFrom, SecretKeySelector, ValueFrom, VolumeClaimGC, WorkflowMetadata, WorkflowTemplateRef,
)

from jobs.core.spec.metrics import GATE_FAILED, HEADLINE
from jobs.core.store import keys
from workflows.stages import STAGES
from workflows.steps import (
    DATA, DATA_KEY, HOUR, OUT, READABLE, RUN_ID, backoff, common_spec, folder_in, folder_out, stage, store_env,
    with_digest,
)

NAME = "quantum-slm"  # the WorkflowTemplate; the chart installs it under this name
SPEC = DATA + "/builds/{{workflow.parameters.spec}}.yaml"

# Names of objects the chart creates (charts/quantum-slm); the local runner provides the same ones.
SERVICE_ACCOUNT = "quantum-slm-workflow"
GIT_SECRET = "quantum-slm-git"  # Secret: username, password (empty for a public repository)

GAUGES = HEADLINE[:2]  # headline scores exported as Prometheus gauges

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
    Parameter(name="previous-report", value="", description="Store key of that build's report/metrics.json, "
                                                           "resolved through its manifest and re-hashed by the "
                                                           "submitter (empty: first build)"),
]


def checkout() -> Container:
    # Only for git-triggered runs: Argo clones the commit; this step saves its data/ where every stage reads it.
    return stage(
        "checkout", "curate",
        ["python", "-c", "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
                         "sys.exit(0 if p.is_file() else f'{p}: no such build spec at this commit')"],
        ["/src/data/builds/{{workflow.parameters.spec}}.yaml"],
        data=False,
        inputs=[GitArtifact(name="repo", path="/src", repo="{{workflow.parameters.git-repo}}",
                            revision="{{workflow.parameters.git-commit}}", mode=READABLE, recurse_mode=True,
                            username_secret=SecretKeySelector(name=GIT_SECRET, key="username", optional=True),
                            password_secret=SecretKeySelector(name=GIT_SECRET, key="password", optional=True))],
        outputs=[S3Artifact(name="data", path="/src/data", key=DATA_KEY)],
        retry=RetryStrategy(limit="3", retry_policy="Always", backoff=backoff()),
        deadline_s=10 * 60,
    )


def spec() -> Container:
    # The first work of every build: the whole spec at the build's commit, every problem listed, before any stage;
    # it also says whether synthesis runs and where curate leaves its dataset (workflows/stages.py).
    return stage("spec", "curate", ["python", "-m", "workflows.stages"], ["--spec", SPEC, "--out", OUT],
                 outputs=[Parameter(name=n, value_from=ValueFrom(path=f"{OUT}/{n}"))
                          for n in ("synthesize", "curated", "retrieval")],
                 resources=Resources(cpu_request="100m", memory_request="256Mi", memory_limit="512Mi"),
                 deadline_s=10 * 60)


def dataset_in() -> Artifact:
    """The dataset train, eval and publish read: runs/<run>/dataset/, written by synthesize or, without synthesis,
    by curate itself (the spec step decides), so no conditional artifact is needed."""
    return folder_in("dataset", "/in/dataset", key=keys.run_key(RUN_ID, "dataset") + "/")


def curate() -> Container:
    return stage(
        "curate", "curate", ["python", "-m", STAGES["curate"]],
        ["--spec", SPEC, "--out", OUT + "/dataset"],  # sources: the spec's, inside the mounted data/
        inputs=[Parameter(name="curated")],
        outputs=[folder_out("dataset", OUT + "/dataset", f"runs/{RUN_ID}/{{{{inputs.parameters.curated}}}}")],
        cache=True,
        resources=Resources(cpu_request="1", memory_request="2Gi", memory_limit="6Gi"),
        retry=RetryStrategy(limit="2", retry_policy="Always", backoff=backoff()),
        deadline_s=2 * HOUR,
    )


def synthesize() -> Container:
    # The train image: the engine writer runs the base model on the GPU; the reply cache lives in the store.
    return stage(
        "synthesize", "train", ["python", "-m", STAGES["synthesize"]],
        ["--spec", SPEC, "--dataset", "/in/curated", "--out", OUT + "/dataset"],
        inputs=[folder_in("curated", "/in/curated", key=keys.run_key(RUN_ID, "curated") + "/")],
        outputs=[folder_out("dataset", OUT + "/dataset", keys.run_key(RUN_ID, "dataset"))],
        cache=True,
        host_memory_gib=12,
        retry=RetryStrategy(limit="2", retry_policy="Always", backoff=backoff()),  # cached replies: a retry resumes
        deadline_s=6 * HOUR,
        **store_env(),
    )


def index_in() -> Artifact:
    """The retrieval index eval and publish read: runs/<run>/index/, written by the index task when the spec has
    `retrieval:`; optional, so a build without one reads nothing there (eval and publish then ignore --index)."""
    artifact = folder_in("index", "/in/index", key=keys.run_key(RUN_ID, "index") + "/")
    artifact.optional = True
    return artifact


def index() -> Container:
    # The eval image: the MiniLM embedder needs torch, which the curate image leaves out. CPU only: a corpus of
    # thousands of paragraphs embeds in minutes, beside training on the GPU.
    return stage(
        "index", "eval", ["python", "-m", STAGES["index"]],
        ["--spec", SPEC, "--dataset", "/in/dataset", "--out", OUT + "/index"],
        inputs=[dataset_in()],
        outputs=[folder_out("index", OUT + "/index", keys.run_key(RUN_ID, "index"))],
        resources=Resources(cpu_request="1", memory_request="2Gi", memory_limit="6Gi"),
        retry=RetryStrategy(limit="2", retry_policy="Always", backoff=backoff()),  # deterministic: safe to rerun
        deadline_s=2 * HOUR,
    )


def train() -> Container:
    return stage(
        "train", "train", ["python", "-m", STAGES["train"]],
        ["--spec", SPEC, "--dataset", "/in/dataset", "--out", OUT + "/adapter", "--checkpoints", "/state/checkpoints"],
        inputs=[dataset_in()],
        outputs=[folder_out("adapter", OUT + "/adapter", keys.run_key(RUN_ID, "adapter"))],
        cache=True,
        host_memory_gib=16,
        # Checkpoints live on a per-run volume, apart from the uploaded adapter; it outlives a failed run
        # (volumeClaimGC: success only), so a retried pod or `argo retry` resumes instead of starting over.
        volumes=[Volume(name="train-state", size="5Gi", mount_path="/state")],
        # Only infrastructure failures (pod deleted, node lost, evicted) are retried: a failing training run
        # (OOM, bad data) would fail again.
        retry=RetryStrategy(limit="3", retry_policy="OnError", backoff=Backoff(duration="1m", factor="2")),
        deadline_s=8 * HOUR,
    )


def eval_(compare: bool) -> Container:
    """The eval step; `compare` adds the previous build's scores (--previous), for the regression checks."""
    args = ["--spec", SPEC, "--dataset", "/in/dataset", "--adapter", "/in/adapter", "--out", OUT + "/report",
            "--index", "/in/index"]
    inputs = [dataset_in(), folder_in("adapter", "/in/adapter"), index_in()]
    if compare:
        args += ["--previous", "/in/previous"]
        inputs.append(folder_in("previous", "/in/previous/metrics.json",
                                key="{{workflow.parameters.previous-report}}"))
    return stage(
        "eval-vs-previous" if compare else "eval-first", "eval", ["python", "-m", STAGES["eval"]], args,
        inputs=inputs,
        outputs=[folder_out("report", OUT + "/report", keys.run_key(RUN_ID, "report")),
                 # single files as well, so the UI previews them (HTML sandboxed, JSON rendered)
                 S3Artifact(name="report-html", path=OUT + "/report/report.html", archive=NoneArchiveStrategy(),
                            key=keys.run_key(RUN_ID, "report_html"), optional=True),
                 S3Artifact(name="metrics-json", path=OUT + "/report/metrics.json", archive=NoneArchiveStrategy(),
                            key=keys.run_key(RUN_ID, "metrics"), optional=True)],
        cache=True,
        host_memory_gib=12,
        # Exit 3 is a verdict (gate failed, report written), not a fault: never retried.
        retry=RetryStrategy(limit="2", retry_policy="Always", backoff=backoff(),
                            expression=f"asInt(lastRetry.exitCode) != {GATE_FAILED}"),
        deadline_s=3 * HOUR,
    )


def publish() -> Container:
    return stage(
        "publish", "curate", ["python", "-m", STAGES["publish"]],  # core only: no torch needed to write the store
        ["--spec", SPEC, "--tag", "{{workflow.parameters.tag}}", "--dataset", "/in/dataset",
         "--adapter", "/in/adapter", "--report", "/in/report", "--index", "/in/index",
         "--git-commit", "{{workflow.parameters.git-commit}}", "--git-dirty", "{{workflow.parameters.git-dirty}}"],
        inputs=[dataset_in(), folder_in("adapter", "/in/adapter"), folder_in("report", "/in/report"), index_in()],
        resources=Resources(cpu_request="500m", memory_request="1Gi", memory_limit="2Gi"),
        # Safe to retry: the manifest is written last and only if absent, so a retry either completes or refuses.
        **store_env(),
    )


def _score_metrics() -> list:
    # Gauges of the headline scores, read from the verdict's small headline.json (the whole metrics.json is tens of
    # KB: as an output parameter it would sit in the workflow's status several times over).
    gauges = [Gauge(name="qslm_eval_" + m, help=f"Headline {m} of the build's adapter", realtime=False,
                    value="{{=jsonpath(outputs.parameters.headline, '$." + m + "')}}",
                    labels=[Label(key="tag", value="{{workflow.parameters.tag}}")],
                    when="{{exitCode}} == 0 || {{exitCode}} == " + str(GATE_FAILED))
              for m in GAUGES]
    return gauges + [Counter(name="qslm_gate_failed_total", help="Builds whose eval gate failed", value="1",
                             when="{{exitCode}} == " + str(GATE_FAILED))]


def verdict() -> Container:
    """After publish: the headline for the UI and the metrics, and the gate's verdict as this step's exit status, so
    a build stored as failed-gate ends the workflow Failed (a DAG's phase is its last tasks')."""
    return stage(
        "verdict", "curate", ["python", "-m", "workflows.verdict"], ["--report", "/in/report", "--out", OUT],
        data=False,
        inputs=[folder_in("report", "/in/report")],
        outputs=[Parameter(name="headline", global_name="headline",
                           value_from=ValueFrom(path=OUT + "/headline.json", default="{}")),
                 Parameter(name="gate", global_name="gate", value_from=ValueFrom(path=OUT + "/gate.txt",
                                                                                 default="unknown"))],
        resources=Resources(cpu_request="100m", memory_request="256Mi", memory_limit="512Mi"),
        metrics=_score_metrics(),
        deadline_s=10 * 60,
    )


def _artifact(task: str, name: str) -> Artifact:
    return Artifact(name=name, from_="{{tasks." + task + ".outputs.artifacts." + name + "}}")


def _build_dag() -> None:
    """The tasks, in order; each one's template is one stage() above."""
    first_build = "'{{workflow.parameters.previous}}' == ''"
    Task(name="checkout", template=checkout(), when="'{{workflow.parameters.git-repo}}' != ''")
    Task(name="spec", template=spec(), depends="checkout.Succeeded || checkout.Skipped")
    Task(name="curate", template=curate(), depends="spec",
         arguments=[Parameter(name="curated", value="{{tasks.spec.outputs.parameters.curated}}")])
    Task(name="synthesize", template=synthesize(), depends="curate",
         when="'{{tasks.spec.outputs.parameters.synthesize}}' == 'true'")
    # A bare `synthesize` is met when it succeeded or was skipped (no synthesis in the spec).
    Task(name="train", template=train(), depends="curate && synthesize")
    Task(name="index", template=index(), depends="curate && synthesize",
         when="'{{tasks.spec.outputs.parameters.retrieval}}' == 'true'")
    # Two branches, one of which runs: eval has --previous only when there is a previous build.
    publish_template, verdict_template = publish(), verdict()
    for compare, suffix in ((False, "-first"), (True, "")):
        eval_task, publish_task = "eval" + suffix, "publish" + suffix
        Task(name=eval_task, template=eval_(compare), depends="train && index",
             when=first_build.replace("==", "!=") if compare else first_build,
             arguments=[_artifact("train", "adapter")])
        # The gate's verdict (exit 3) is published as failed-gate; any other eval failure publishes nothing.
        exit_code = "{{tasks." + eval_task + ".exitCode}}"
        Task(name=publish_task, template=publish_template, depends=f"{eval_task}.Succeeded || {eval_task}.Failed",
             when=f"{exit_code} == 0 || {exit_code} == {GATE_FAILED}",
             arguments=[_artifact("train", "adapter"), _artifact(eval_task, "report")])
        Task(name="verdict" + suffix, template=verdict_template, depends=publish_task + ".Succeeded",
             arguments=[_artifact(eval_task, "report")])


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
        active_deadline_seconds=14 * HOUR,  # the whole build, queueing for a GPU included
        # Success only: a failed run keeps train's checkpoint volume, so a retry resumes training.
        volume_claim_gc=VolumeClaimGC(strategy="OnWorkflowSuccess"),
        workflow_metadata=WorkflowMetadata(
            labels_from={"quantum-slm/tag": LabelValueFrom(expression="workflow.parameters.tag")}),
        metrics=[
            Gauge(name="qslm_build_duration_seconds", help="Wall time of a whole build", realtime=False,
                  value="{{workflow.duration}}", labels=[Label(key="tag", value="{{workflow.parameters.tag}}"),
                                                         Label(key="status", value="{{workflow.status}}")]),
            Counter(name="qslm_build_failed_total", help="Builds that ended Failed or Error (a failed gate too)",
                    when="{{workflow.status}} != Succeeded", value="1"),
        ],
        **common_spec(),
    ) as wt:
        with DAG(name="build"):
            _build_dag()
    return with_digest(wt)


def run_workflow(tag: str, spec: str, image_tag: str, git_commit: str, *, name: str, git_dirty: bool = False,
                 data_hash: str = "", previous: str = "", previous_report: str = "", image_prefix: str = "",
                 git_repo: str = "",
                 namespace: str | None = None, short: str | None = None) -> Workflow:
    """One build: a Workflow that references the template, with a title and description for the Argo UI.
    `short` is the commit as shown (default: its first 8 characters)."""
    short = short or git_commit[:8]
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
                   Parameter(name="previous", value=previous),
                   Parameter(name="previous-report", value=previous_report)],
    )
