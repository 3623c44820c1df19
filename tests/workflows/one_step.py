"""One-step WorkflowTemplates made with the pipeline's own `stage()`, for testing the conditions the local runner
reproduces with small commands instead of whole stages."""

from __future__ import annotations

from hera.workflows import DAG, S3Artifact, Task, WorkflowTemplate

from workflows.steps import RUN_ID, common_spec, folder_out, stage


def step_template(image_ref: str, command: list[str], *, outputs: dict[str, str] | None = None,
                  inputs: dict[str, tuple[str, str]] | None = None, out_volume: bool = True,
                  mode: int | None = 0o755) -> dict:
    """A template `conditions` whose one task `step` runs `command` in `image_ref` as a pipeline step would:
    outputs {name: path} go to runs/<run>/step/<name>/; inputs {name: (path, key)} come from the store."""
    arts_in = [S3Artifact(name=n, path=p, key=k, mode=mode, recurse_mode=True if mode else None)
               for n, (p, k) in (inputs or {}).items()]
    arts_out = [folder_out(n, p, f"runs/{RUN_ID}/step/{n}") for n, p in (outputs or {}).items()]
    with WorkflowTemplate(name="conditions", entrypoint="main", **common_spec()) as wt:
        with DAG(name="main"):
            Task(name="step", template=stage("step", "curate", command, [], inputs=arts_in, outputs=arts_out,
                                             data=False))
    template = wt.to_dict()
    step = next(t for t in template["spec"]["templates"] if t["name"] == "step")
    step["container"]["image"] = image_ref
    if not out_volume:
        step["volumes"] = [v for v in step["volumes"] if v["name"] != "out"]
        step["container"]["volumeMounts"] = [m for m in step["container"]["volumeMounts"] if m["name"] != "out"]
    return template
