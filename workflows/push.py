"""What a git push runs (GitOps): the WorkflowTemplate the chart's WorkflowEventBinding submits for each push.

    from workflows.push import push_template
    push_template().to_yaml()                          # rendered to workflows/rendered/push.yaml

plan -> start: the plan step runs `python -m workflows.trigger plan` on the push's payload (the decision, tested in
Python: which tags to build, none already complete), then one `start` task per tag applies a Workflow of the build
template (`quantum-slm`, via run_workflow) with a name fixed by the tag and the commit. A second delivery of the
same push therefore plans nothing new (the tag is complete) or re-applies a Workflow that exists (no change): a
clean no-op either way. The builds run side by side, their GPU steps limited by the GPU semaphore.
"""

from __future__ import annotations

from hera.workflows import DAG, Parameter, RawArtifact, Resource, RetryStrategy, Task, WorkflowTemplate
from hera.workflows.models import ConfigMapEnvSource, EnvFromSource, ValueFrom

from workflows.pipeline import ARGUMENTS, run_workflow
from workflows.steps import HOUR, OUT, READABLE, common_spec, stage, store_env, with_digest
from workflows.trigger import BUILD_FIELDS

NAME = "quantum-slm-push"  # the chart installs it; its WorkflowEventBinding submits it
SERVICE_ACCOUNT = "quantum-slm-push"  # may apply Workflows (the build pods' account may not)
TRIGGER_CONFIG = "quantum-slm-trigger"  # ConfigMap: QSLM_TRIGGER_SPECS, QSLM_TRIGGER_BRANCH (the chart's values)


def plan():
    env = store_env()
    return stage(
        "plan", "curate", ["python", "-m", "workflows.trigger", "plan"],
        ["--payload", "/in/payload.json", "--store", "--json", OUT + "/builds.json",
         "--image-tag", "{{workflow.parameters.image-tag}}", "--image-prefix", "{{workflow.parameters.image-prefix}}"],
        data=False,
        inputs=[RawArtifact(name="payload", path="/in/payload.json", data="{{workflow.parameters.payload}}",
                            mode=READABLE, recurse_mode=True)],
        outputs=[Parameter(name="builds", value_from=ValueFrom(path=OUT + "/builds.json"))],
        env=env["env"],
        env_from=env["env_from"] + [EnvFromSource(config_map_ref=ConfigMapEnvSource(name=TRIGGER_CONFIG))],
        deadline_s=10 * 60,
    )


def start() -> Resource:
    """Apply one build's Workflow; its fields come from the plan's record (BUILD_FIELDS)."""
    p = {f: "{{inputs.parameters." + f + "}}" for f in BUILD_FIELDS}
    wf = run_workflow(p["tag"], p["spec"], p["image_tag"], p["commit"], name=p["name"], previous=p["previous"],
                      previous_report=p["previous_report"],
                      image_prefix=p["image_prefix"], git_repo=p["repo"], short=p["short"])
    return Resource(
        name="start",
        action="apply",  # not create: applying a Workflow that exists changes nothing, so a redelivery is a no-op
        set_owner_reference=False,  # a build outlives the push workflow that started it
        manifest=wf.to_yaml(),
        inputs=[Parameter(name=f) for f in BUILD_FIELDS],
        retry_strategy=RetryStrategy(limit="2", retry_policy="OnError"),
        active_deadline_seconds=5 * 60,
    )


def push_template(namespace: str | None = None) -> WorkflowTemplate:
    """The WorkflowTemplate a push runs. Pure: builds objects, talks to nothing."""
    with WorkflowTemplate(
        name=NAME,
        namespace=namespace,
        entrypoint="push",
        annotations={"workflows.argoproj.io/title": "quantum-slm push",
                     "workflows.argoproj.io/description": "A git push: plan the tags it builds "
                                                          "(workflows/trigger.py), then start one build per tag"},
        labels={"app.kubernetes.io/name": "quantum-slm", "app.kubernetes.io/component": "trigger"},
        arguments=[Parameter(name="payload", description="The push webhook's JSON body (GitHub or Gitea)"),
                   # the images every build of a push runs (a push builds no images): the chart's trigger values
                   next(p for p in ARGUMENTS if p.name == "image-tag"),
                   next(p for p in ARGUMENTS if p.name == "image-prefix")],
        service_account_name=SERVICE_ACCOUNT,
        active_deadline_seconds=HOUR // 2,
        **common_spec(),
    ) as wt:
        with DAG(name="push"):
            Task(name="plan", template=plan())
            Task(name="start", template=start(), depends="plan", with_param="{{tasks.plan.outputs.parameters.builds}}",
                 arguments=[Parameter(name=f, value="{{item." + f + "}}") for f in BUILD_FIELDS])
    return with_digest(wt)
