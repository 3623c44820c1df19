"""Reference checks for a rendered WorkflowTemplate (and a Workflow that runs it) that no JSON schema makes:
every task's template exists, every parameter and artifact a template uses is declared, every `from` names an
output of an upstream task, the GPU steps carry what a GPU node needs, and every step meets a real cluster's
conditions (Pod Security "restricted", a read-only root, outputs on volumes, inputs its user can read).

    from workflows.emulator.lint import lint
    problems = lint(template_dict, workflow_dict)     # [] when clean

`argo lint --offline` would do part of this, but needs the argo binary, which these machines cannot have.
"""

from __future__ import annotations

import json
import re

VARIABLE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
DEPENDS_RESULTS = {"Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded", "AllFailed"}
# Variables Argo itself provides (its documentation's docs/variables.md), by prefix or exact name.
BUILTIN = ("workflow.name", "workflow.namespace", "workflow.uid", "workflow.duration", "workflow.status",
           "workflow.creationTimestamp", "workflow.failures", "pod.name", "retries", "exitCode", "status",
           "duration")


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def depends_on(task: dict) -> set[str]:
    words = set(TASK_NAME.findall(task.get("depends", "")))
    # "a.Succeeded" splits into "a" and "Succeeded"; result names are not tasks
    return {w for w in words if w not in DEPENDS_RESULTS}


def ancestors(name: str, tasks: dict[str, dict]) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        for dep in depends_on(tasks[todo.pop()]):
            if dep in tasks and dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _check_template_variables(t: dict, arguments: set[str], problems: list[str]) -> None:
    declared_params = {p["name"] for p in t.get("inputs", {}).get("parameters", [])}
    declared_arts = {a["name"] for a in t.get("inputs", {}).get("artifacts", [])}
    output_params = {p["name"] for p in t.get("outputs", {}).get("parameters", [])}
    body = {k: v for k, v in t.items() if k != "dag"}  # DAG task variables are checked per task
    for text in _strings(body):
        for var in VARIABLE.findall(text):
            if var.startswith("="):  # an expression: check the names it reads
                names = re.findall(r"(inputs\.parameters\.[\w-]+|outputs\.parameters\.[\w-]+|"
                                   r"workflow\.parameters\.[\w-]+)", var)
            else:
                names = [var]
            for name in names:
                kind, _, rest = name.partition(".")
                if name.startswith("workflow.parameters."):
                    if rest.partition(".")[2] not in arguments:
                        problems.append(f"template {t['name']}: {{{{{name}}}}} is not a workflow argument")
                elif name.startswith("inputs.parameters."):
                    if name.split(".", 2)[2] not in declared_params:
                        problems.append(f"template {t['name']}: {{{{{name}}}}} is not a declared input parameter")
                elif name.startswith("inputs.artifacts."):
                    if name.split(".", 2)[2].split(".")[0] not in declared_arts:
                        problems.append(f"template {t['name']}: {{{{{name}}}}} is not a declared input artifact")
                elif name.startswith("outputs.parameters."):
                    if name.split(".", 2)[2] not in output_params:
                        problems.append(f"template {t['name']}: {{{{{name}}}}} is not a declared output parameter")
                elif not name.startswith(BUILTIN):
                    problems.append(f"template {t['name']}: unknown variable {{{{{name}}}}}")


def _check_dag(dag_t: dict, templates: dict[str, dict], problems: list[str]) -> None:
    tasks = {task["name"]: task for task in dag_t["dag"]["tasks"]}
    for name, task in tasks.items():
        where = f"DAG {dag_t['name']} task {name}"
        t = templates.get(task.get("template", ""))
        if t is None:
            problems.append(f"{where}: template {task.get('template')!r} does not exist")
            continue
        for dep in depends_on(task) - set(tasks):
            problems.append(f"{where}: depends on unknown task {dep!r}")
        upstream = ancestors(name, tasks)
        args = task.get("arguments", {})
        given_params = {p["name"] for p in args.get("parameters", [])}
        given_arts = {a["name"] for a in args.get("artifacts", [])}
        inputs = t.get("inputs", {})
        for p in inputs.get("parameters", []):
            if p["name"] not in given_params and "value" not in p and "default" not in p:
                problems.append(f"{where}: input parameter {p['name']!r} of {t['name']} is not given")
        for a in inputs.get("artifacts", []):
            located = any(k in a for k in ("s3", "git", "http", "raw", "gcs", "azure", "oss", "hdfs", "artifactory"))
            if a["name"] not in given_arts and not located and not a.get("optional"):
                problems.append(f"{where}: input artifact {a['name']!r} of {t['name']} is not given")
        declared = {p["name"] for p in inputs.get("parameters", [])} | {a["name"] for a in inputs.get("artifacts", [])}
        for extra in (given_params | given_arts) - declared:
            problems.append(f"{where}: passes {extra!r}, which {t['name']} does not declare as an input")
        for text in _strings({k: v for k, v in task.items() if k != "name"}):
            for var in VARIABLE.findall(text):
                m = re.fullmatch(r"tasks\.([\w-]+)\.(outputs\.(artifacts|parameters)\.([\w-]+)|exitCode|status)", var)
                if not var.startswith("tasks."):
                    continue
                if not m or m.group(1) not in tasks:
                    problems.append(f"{where}: {{{{{var}}}}} names no task of this DAG")
                    continue
                if m.group(1) not in upstream:
                    problems.append(f"{where}: {{{{{var}}}}} reads task {m.group(1)!r}, which is not upstream")
                if m.group(3):
                    producer = templates.get(tasks[m.group(1)].get("template", ""), {})
                    outs = {o["name"] for o in producer.get("outputs", {}).get(m.group(3), [])}
                    if m.group(4) not in outs:
                        problems.append(f"{where}: {{{{{var}}}}}: {producer.get('name')} has no output "
                                        f"{m.group(3)[:-1]} {m.group(4)!r}")


def _check_gpu(t: dict, problems: list[str]) -> None:
    limits = t.get("container", {}).get("resources", {}).get("limits", {})
    if "nvidia.com/gpu" not in limits:
        return
    where = f"GPU template {t['name']}"
    if json.loads(t.get("podSpecPatch", "{}")).get("runtimeClassName") != "nvidia":
        problems.append(f"{where}: no runtimeClassName nvidia in podSpecPatch")
    if not any(tol.get("key") == "nvidia.com/gpu" for tol in t.get("tolerations", [])):
        problems.append(f"{where}: does not tolerate the nvidia.com/gpu taint")
    shm = [v for v in t.get("volumes", []) if v.get("emptyDir", {}).get("medium") == "Memory"]
    mounts = {m["name"]: m["mountPath"] for m in t.get("container", {}).get("volumeMounts", [])}
    if not any(mounts.get(v["name"]) == "/dev/shm" for v in shm):
        problems.append(f"{where}: no memory-backed /dev/shm")
    if not any("configMapKeyRef" in s for s in t.get("synchronization", {}).get("semaphores", [])):
        problems.append(f"{where}: no GPU semaphore (a ConfigMap holding the GPU count), so GPU steps could "
                        f"outnumber the cards")


# Pod Security Standards, "restricted" profile (Kubernetes 1.33), the parts a pod spec states.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def restricted_problems(where: str, pod: dict, containers: list[dict], volumes: list[dict]) -> list[str]:
    """Why a pod (its securityContext, containers and volumes) would be refused by a namespace enforcing Pod
    Security "restricted"; [] when it would be admitted."""
    problems = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(f"{where}: {key} is not allowed")
    for v in volumes:
        kind = next((k for k in v if k != "name"), None)
        if kind not in RESTRICTED_VOLUMES:
            problems.append(f"{where}: volume {v.get('name')} of type {kind} is not allowed")
    psc = pod.get("securityContext") or {}
    for c in containers:
        sc, name = c.get("securityContext") or {}, f"{where} container {c.get('name', 'main')}"
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: securityContext.allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{name}: securityContext.capabilities.drop must include ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: may add only NET_BIND_SERVICE, adds {caps['add']}")
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost (pod or container)")
    return problems


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _check_container_conditions(t: dict, spec: dict, problems: list[str]) -> None:
    """What a real cluster imposes and Argo does not check: a read-only root, where outputs can be written, who
    can read the inputs, images that are never pulled again, Pod Security "restricted"."""
    c, where = t["container"], f"template {t['name']}"
    if c.get("imagePullPolicy") != "IfNotPresent":
        problems.append(f"{where}: imagePullPolicy must be IfNotPresent (images imported into k3s cannot be pulled)")
    if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: securityContext.readOnlyRootFilesystem must be true")
    mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
    inputs = [a["path"] for a in t.get("inputs", {}).get("artifacts", [])]
    outputs = [a["path"] for a in t.get("outputs", {}).get("artifacts", [])] + \
        [p["valueFrom"]["path"] for p in t.get("outputs", {}).get("parameters", []) if "path" in p.get("valueFrom", {})]
    for path in outputs:
        if not any(_under(path, m) for m in mounts + inputs):
            problems.append(f"{where}: output {path} is on no volume the template declares: the step's user cannot "
                            f"create it on a read-only root (add an emptyDir)")
    for a in t.get("inputs", {}).get("artifacts", []):
        mode = a.get("mode")
        if mode is None or mode & 0o005 != 0o005 or not a.get("recurseMode"):
            problems.append(f"{where}: input artifact {a['name']} needs mode (readable by others, e.g. 0o755) and "
                            f"recurseMode: Argo writes inputs as its own user, 0700/0600 (argo-workflows#14792)")
    pod = {"securityContext": t.get("securityContext") or spec.get("securityContext")}
    volumes = t.get("volumes", []) + [{"name": v["metadata"]["name"], "persistentVolumeClaim": {}}
                                      for v in spec.get("volumeClaimTemplates", [])]
    problems.extend(restricted_problems(where, pod, [c], volumes))


def lint(template: dict, workflow: dict | None = None) -> list[str]:
    """Problems found in a WorkflowTemplate dict (and a Workflow dict referencing it); [] when clean."""
    problems: list[str] = []
    spec = template["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    arguments = {p["name"]: p for p in spec.get("arguments", {}).get("parameters", [])}
    if spec.get("entrypoint") not in templates:
        problems.append(f"entrypoint {spec.get('entrypoint')!r} is not a template")
    for t in templates.values():
        _check_template_variables(t, set(arguments), problems)
        if "dag" in t:
            _check_dag(t, templates, problems)
        if "container" in t:
            _check_gpu(t, problems)
            _check_container_conditions(t, spec, problems)
            image = t["container"].get("image", "")
            if not image or image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]:
                problems.append(f"template {t['name']}: image {image!r} is not pinned to a tag")
    for text in _strings(spec.get("metrics", {})):
        for var in VARIABLE.findall(text):
            if var.startswith("workflow.parameters.") and var.split(".", 2)[2] not in arguments:
                problems.append(f"workflow metrics: {{{{{var}}}}} is not a workflow argument")
    if workflow is not None:
        ref = workflow["spec"].get("workflowTemplateRef", {}).get("name")
        if ref != template["metadata"]["name"]:
            problems.append(f"workflow references template {ref!r}, not {template['metadata']['name']!r}")
        given = {p["name"]: p for p in workflow["spec"].get("arguments", {}).get("parameters", [])}
        for name in set(given) - set(arguments):
            problems.append(f"workflow passes parameter {name!r}, which the template does not declare")
        for name, p in arguments.items():
            if "value" not in p and "value" not in given.get(name, {}):
                problems.append(f"workflow does not give required parameter {name!r}")
            if "enum" in p and name in given and given[name].get("value") not in p["enum"]:
                problems.append(f"workflow parameter {name}={given[name].get('value')!r} is not one of {p['enum']}")
    return problems
