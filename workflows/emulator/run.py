"""python -m workflows.emulator.run --tag smoke [--image-tag TAG] [--work DIR]
python -m workflows.emulator.run --payload PUSH.json [--image-tag TAG] [--work DIR]

Runs the rendered WorkflowTemplates (workflows/rendered/) without a cluster, each step in its image with Docker
under the conditions a real cluster imposes (workflows/emulator/pod.py: the pod's user, a read-only root, inputs
placed by a root init step with minio-go's modes, outputs read back from the declared paths by a separate
container running as Argo's executor user with no capabilities: an unreadable output fails the step, where
argoexec would upload nothing and let it succeed), its artifacts moved
the way Argo moves key-only S3 artifacts, against the store in QSLM_STORE (s3://bucket, with S3_ENDPOINT_URL
reachable from the host network). --tag runs one build as `make submit` starts it; --payload runs what a git
push starts: the push template, whose plan step decides the tags, then each build it applies.

What it emulates: parameters, `depends` and `when`, withParam fan-out, key-only S3, raw and git input artifacts,
`from` artifacts, optional artifacts, output parameters, the DAG's phase from its last tasks as Argo's controller
assesses it, resource templates that apply a Workflow (applying one that exists changes nothing), the chart's
Secret/ConfigMap env, the GPU semaphore's ConfigMap, ARGO_PROGRESS_FILE. What it does not: retries, GPUs (the jobs
fall back to CPU), concurrency (steps run one at a time), deadlines, metrics.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from jobs.core.store import keys
from jobs.core import progress
from jobs.core.errors import QslmError
from jobs.core.store.registry import previous_build, previous_report_key, read_manifest
from jobs.core.store.backends import open_store
from jobs.core.spec.load import load_spec
from workflows import pipeline, push, steps
from jobs.core.repo import REPO_ROOT
from workflows.emulator.lint import depends_on
from workflows.emulator.pod import Pod, save_artifact
from workflows.names import IMAGE_TAG
from workflows.submit import data_snapshot, data_state, run_name

RENDERED = {pipeline.NAME: REPO_ROOT / "workflows" / "rendered" / "pipeline.yaml",
            push.NAME: REPO_ROOT / "workflows" / "rendered" / "push.yaml"}
VARIABLE = re.compile(r"\{\{\s*([^{}=]+?)\s*\}\}")
FINISHED = ("Succeeded", "Failed", "Error")


class RunError(QslmError):
    pass


def substitute(obj, values: dict[str, str]):
    """Replace {{name}} in every string of obj; unknown names are left as they are (Argo resolves them later)."""
    if isinstance(obj, str):
        return VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), obj)
    if isinstance(obj, list):
        return [substitute(v, values) for v in obj]
    if isinstance(obj, dict):
        return {k: substitute(v, values) for k, v in obj.items()}
    return obj


def _boolean(expression: str, names: dict[str, bool | str]) -> bool:
    """Evaluate Argo's small `depends`/`when` language: names, literals, == != && || ! and parentheses.

    `when` holds substituted parameters, and a push payload's values reach them, so this is a walk over the
    parsed expression that knows those operators alone, never Python's eval."""
    py = expression.replace("&&", " and ").replace("||", " or ")
    py = re.sub(r"!(?!=)", " not ", py)
    try:
        return bool(_value(ast.parse(py.strip(), mode="eval").body, names))
    except (SyntaxError, KeyError, TypeError) as exc:
        raise RunError(f"cannot evaluate the expression {expression!r} ({type(exc).__name__}); only names, "
                       f"literals, ==, !=, &&, || and ! are understood") from None


def _value(node, names: dict[str, bool | str]):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _value(node.operand, names)
    if isinstance(node, ast.BoolOp):
        values = (_value(v, names) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare) and all(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
        left, result = _value(node.left, names), True
        for op, comparator in zip(node.ops, node.comparators):
            right = _value(comparator, names)
            result = result and ((left == right) if isinstance(op, ast.Eq) else (left != right))
            left = right
        return result
    raise TypeError(type(node).__name__)


def depends_met(depends: str, phases: dict[str, str]) -> bool:
    """`a.Succeeded || a.Failed`, or a bare `a` (Argo: a succeeded or was skipped), against the phases so far."""
    def value(m):
        phase, result = phases[m.group(1)], m.group(2)
        ok = phase in ("Succeeded", "Skipped") if result is None else phase == result.replace("Errored", "Error")
        return f" {ok} "
    return _boolean(re.sub(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:\.(\w+))?", value, depends), {})


def when_met(when: str) -> bool:
    return _boolean(when, {})


def dag_phase(tasks: list[dict], phases: dict[str, str]) -> str:
    """The DAG's phase as Argo's controller assesses it (workflow/controller/dag.go assessDAGPhase): only its last
    tasks count; one that did not run (Skipped, Omitted) takes the phase of the branch above it, a failure winning."""
    children = {t["name"]: [c["name"] for c in tasks if t["name"] in depends_on(c)] for t in tasks}
    leaves = [t["name"] for t in tasks if not children[t["name"]]]
    branch: dict[str, str] = {}
    queue = [(t["name"], "Succeeded") for t in tasks if not depends_on(t)]
    while queue:
        name, inherited = queue.pop(0)
        own = phases.get(name, "")
        phase = own if own in FINISHED else inherited
        if branch.get(name) not in ("Failed", "Error"):
            branch[name] = phase
        queue += [(c, phase) for c in children[name]]
    failed = [branch[n] for n in leaves if branch.get(n) in ("Failed", "Error")]
    return failed[0] if failed else "Succeeded"


class LocalRun:
    """One Workflow of one of the rendered templates, run task by task. `cluster` is what exists across runs:
    the store, the chart's objects, the model cache, and the Workflows applied so far ({name: phase})."""

    def __init__(self, workflow: dict, cluster: dict, work: Path):
        ref = workflow["spec"]["workflowTemplateRef"]["name"]
        self.template = yaml.safe_load(RENDERED[ref].read_text())
        self.spec = self.template["spec"]
        self.templates = {t["name"]: t for t in self.spec["templates"]}
        self.name, self.cluster, self.work = workflow["metadata"]["name"], cluster, work / workflow["metadata"]["name"]
        given = {p["name"]: p.get("value") for p in workflow["spec"].get("arguments", {}).get("parameters", [])}
        declared = {p["name"]: p.get("value") for p in self.spec.get("arguments", {}).get("parameters", [])}
        missing = [n for n in declared if given.get(n, declared[n]) is None]
        if missing:
            raise RunError(f"workflow {self.name} gives no value for {missing}")
        self.values = {f"workflow.parameters.{n}": given.get(n, v) for n, v in declared.items()}
        self.values["workflow.name"] = self.name
        self.claims = {c["metadata"]["name"]: self.work / "claims" / c["metadata"]["name"]
                       for c in self.spec.get("volumeClaimTemplates", [])}
        self.phases: dict[str, str] = {}
        self.results: dict[str, dict] = {}  # task -> {exitCode, artifacts: {name: artifact}, parameters: {...}}
        self.stages = [t["name"] for t in self.templates[self.spec["entrypoint"]]["dag"]["tasks"]]
        self.events: Path | None = None  # the build's progress file (jobs/core/progress.py); local_run sets it

    def _scope(self) -> dict:
        scope = dict(self.values)
        for task, r in self.results.items():
            scope[f"tasks.{task}.exitCode"] = str(r["exitCode"])
            scope |= {f"tasks.{task}.outputs.parameters.{k}": v for k, v in r["parameters"].items()}
        return scope

    def _sources(self, task: dict, t: dict) -> dict[str, dict]:
        """{input artifact name: the artifact it is fetched from} ({{tasks.x.outputs.artifacts.y}} resolved)."""
        given = {a["name"]: a for a in task.get("arguments", {}).get("artifacts", [])}
        sources = {}
        for art in t.get("inputs", {}).get("artifacts", []):
            source = given.get(art["name"], art)
            if "from" in source:
                producer, _, _, name = source["from"].strip("{}").split(".")[1:]
                source = self.results[producer]["artifacts"].get(name)
            if source is not None and any(k in source for k in ("s3", "raw", "git")):
                sources[art["name"]] = source
        return sources

    def _check_synchronization(self, t: dict) -> None:
        for s in t.get("synchronization", {}).get("semaphores", []):
            ref = s["configMapKeyRef"]
            if ref["key"] not in self.cluster["configmaps"].get(ref["name"], {}):
                raise RunError(f"template {t['name']}: semaphore ConfigMap {ref['name']} has no key {ref['key']}")

    def _fetch_git(self, git: dict, dest: Path) -> str:
        subprocess.run(["git", "clone", "-q", git["repo"], str(dest)], check=True)
        subprocess.run(["git", "-c", "advice.detachedHead=false", "checkout", "-q", git["revision"]], cwd=dest,
                       check=True)
        return "archive"  # go-git writes the files with their own modes, like an unpacked archive

    def run_task(self, task: dict, label: str) -> dict:
        """Run one (expanded) task; returns its result."""
        t = substitute(self.templates[task["template"]], self._scope() | self._inputs(task))
        if "resource" in t:
            return self._apply(t, label)
        self._check_synchronization(t)
        c = t["container"]
        print(f"\n==> {label}: {c['image']} {' '.join(c['command'] + c.get('args', []))}", flush=True)
        pod = Pod(t, name=f"{self.name}-{label}".replace("(", "-").replace(")", "").replace(":", "-")[:120],
                  work=self.work / label, pod_security=self.spec.get("securityContext"),
                  claims=self.claims | self.cluster["claims"], secrets=self.cluster["secrets"],
                  configmaps=self.cluster["configmaps"])
        started = time.monotonic()
        where = {"stage": label, "index": self.stages.index(task["name"]) + 1 if task["name"] in self.stages else 0,
                 "of": len(self.stages)}
        progress.write(self.events, "stage_start", **where)
        code, artifacts, parameters = pod.run(self.cluster["store"], self._sources(task, t), self._fetch_git)
        result = {"exitCode": code, "artifacts": {}, "parameters": parameters}
        for art in t.get("outputs", {}).get("artifacts", []):  # saved whatever the exit code, as Argo does
            if art["name"] in artifacts:
                save_artifact(self.cluster["store"], art, artifacts[art["name"]])
                result["artifacts"][art["name"]] = art
            elif not art.get("optional") and code == 0:
                code = result["exitCode"] = 1
                print(f"    output artifact {art['name']}: {art['path']} was not written", flush=True)
        missing = [p["name"] for p in t.get("outputs", {}).get("parameters", []) if p["name"] not in parameters]
        if missing and code == 0:
            code = result["exitCode"] = 1
            print(f"    output parameters {missing} were not written", flush=True)
        result["phase"] = "Succeeded" if code == 0 else "Failed"
        progress.write(self.events, "stage_end" if code == 0 else "stage_fail", **where,
                       seconds=round(time.monotonic() - started, 1), **({} if code == 0 else {"rc": code}))
        argo_progress = self.work / label / "argo" / "progress"
        print(f"<== {label}: {result['phase']} (exit {code}, {time.monotonic() - started:.0f} s"
              f"{', progress ' + argo_progress.read_text().strip() if argo_progress.is_file() else ''})", flush=True)
        return result

    def _inputs(self, task: dict) -> dict:
        # An argument's value may itself name an upstream output ({{tasks.spec.outputs.parameters.x}}): resolve it.
        return {f"inputs.parameters.{p['name']}": substitute(p.get("value", ""), self._scope())
                for p in task.get("arguments", {}).get("parameters", [])}

    def _apply(self, t: dict, label: str) -> dict:
        """A resource template applying a Workflow: created once, then run like the controller would run it."""
        manifest = yaml.safe_load(t["resource"]["manifest"])
        if t["resource"]["action"] != "apply" or manifest.get("kind") != "Workflow":
            raise RunError(f"template {t['name']}: the local runner applies Workflows only")
        name = manifest["metadata"]["name"]
        print(f"\n==> {label}: apply Workflow {name}", flush=True)
        if name in self.cluster["applied"]:
            print(f"<== {label}: workflow.argoproj.io/{name} unchanged", flush=True)
        else:
            self.cluster["applied"][name] = "Running"
            self.cluster["applied"][name] = LocalRun(manifest, self.cluster, self.work.parent).run()
        return {"exitCode": 0, "artifacts": {}, "parameters": {}, "phase": "Succeeded"}

    def run(self) -> str:
        """Run the entrypoint DAG; returns the workflow's phase."""
        tasks = self.templates[self.spec["entrypoint"]]["dag"]["tasks"]
        pending = list(tasks)
        while pending:
            ready = [t for t in pending if all(d in self.phases for d in depends_on(t))]
            if not ready:
                raise RunError(f"tasks {[t['name'] for t in pending]} wait on each other")
            for task in ready:
                pending.remove(task)
                name = task["name"]
                if task.get("depends") and not depends_met(task["depends"], self.phases):
                    self.phases[name] = "Omitted"
                elif task.get("when") and not when_met(substitute(task["when"], self._scope())):
                    self.phases[name] = "Skipped"
                else:
                    self.phases[name] = self._run_expanded(task)
                    continue
                print(f"--- {name}: {self.phases[name]}", flush=True)
        phase = dag_phase(tasks, self.phases)
        print(f"=== {self.name}: {phase}", flush=True)
        return phase

    def _run_expanded(self, task: dict) -> str:
        """A task, or with withParam one task per item (Argo: an empty list skips it). Returns its phase."""
        if "withParam" not in task:
            self.results[task["name"]] = self.run_task(task, task["name"])
            return self.results[task["name"]]["phase"]
        items = json.loads(substitute(task["withParam"], self._scope()))
        if not items:
            print(f"--- {task['name']}: Skipped (empty params)", flush=True)
            return "Skipped"
        phases = []
        for i, item in enumerate(items):
            values = {f"item.{k}": str(v) for k, v in item.items()} if isinstance(item, dict) else {"item": str(item)}
            one = substitute({k: v for k, v in task.items() if k != "withParam"}, values)
            phases.append(self.run_task(one, f"{task['name']}({i})")["phase"])
        return "Failed" if "Failed" in phases else "Succeeded"


def cluster_objects(store, volumes: Path, env=os.environ) -> dict:
    """What the chart creates and the runs share, made from this machine's store settings."""
    return {
        "store": store,
        "secrets": {steps.STORE_SECRET: {"accesskey": env.get("AWS_ACCESS_KEY_ID", ""),
                                            "secretkey": env.get("AWS_SECRET_ACCESS_KEY", "")},
                    pipeline.GIT_SECRET: {"username": "", "password": ""}},
        "configmaps": {steps.STORE_CONFIG: {"QSLM_STORE": env["QSLM_STORE"],
                                               "S3_ENDPOINT_URL": env.get("S3_ENDPOINT_URL", ""),
                                               "AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION", "us-east-1")},
                       steps.GPU_SEMAPHORE.name: {steps.GPU_SEMAPHORE.key: "1"},
                       push.TRIGGER_CONFIG: {"QSLM_TRIGGER_SPECS": env.get("QSLM_TRIGGER_SPECS", ""),
                                             "QSLM_TRIGGER_BRANCH": env.get("QSLM_TRIGGER_BRANCH", "main")}},
        "claims": {steps.MODELS_CLAIM: volumes / steps.MODELS_CLAIM},
        "applied": {},
    }


def _cluster(store, work: Path | None, volumes: Path | None) -> tuple[dict, Path]:
    if not store.url.startswith("s3://"):
        raise RunError(f"QSLM_STORE is {store.url}: the local runner emulates Argo's S3 artifacts; give s3://bucket")
    work = work or REPO_ROOT / ".work" / "local-run"
    return cluster_objects(store, volumes or work / "volumes"), work


def local_run(tag: str, *, image_tag: str | None = None, image_prefix: str = "", repo: Path | None = None,
              work: Path | None = None, volumes: Path | None = None, allow_dirty: bool = False,
              cluster: dict | None = None) -> tuple[str, str]:
    """Run build `tag` as `make submit` starts it (data/ uploaded from the checkout); returns (run name, phase)."""
    repo, store = repo or REPO_ROOT, open_store()
    default_cluster, work = _cluster(store, work, volumes)
    git = data_state(repo)
    if git["dirty"] and not allow_dirty:
        raise RunError("data/ has uncommitted changes; commit them or pass --allow-dirty")
    name = run_name(tag)
    store.put_bytes(steps.DATA_KEY.replace("{{workflow.name}}", name),
                    data_snapshot(repo, None if git["dirty"] else git["commit"]))
    previous = previous_build(store, tag, load_spec(repo / "data" / "builds" / f"{tag}.yaml")) or ""
    wf = pipeline.run_workflow(tag, tag, image_tag or IMAGE_TAG, git["commit"], name=name, git_dirty=git["dirty"],
                               data_hash=git["data_hash"], previous=previous,
                               previous_report=previous_report_key(store, previous), image_prefix=image_prefix).to_dict()
    runner = LocalRun(wf, cluster or default_cluster, work)
    runner.events = progress.event_file(work.parent, tag)  # beside make build's: .work/progress/<tag>.jsonl
    runner.events.parent.mkdir(parents=True, exist_ok=True)
    runner.events.unlink(missing_ok=True)
    progress.write(runner.events, "build_start", tag=tag, stages=runner.stages, pid=os.getpid(), estimates_s={})
    started = time.monotonic()
    try:
        phase = runner.run()
    finally:
        status = "failed"
        if store.exists(keys.manifest_key(tag)):
            status = read_manifest(store, tag).get("status", "failed")
        progress.write(runner.events, "build_end", status=status, seconds=round(time.monotonic() - started, 1))
    return name, phase


def local_push(payload: dict, *, image_tag: str, image_prefix: str = "", work: Path | None = None,
               volumes: Path | None = None, cluster: dict | None = None) -> tuple[str, str, dict[str, str]]:
    """Run what the chart's WorkflowEventBinding submits for a push; returns (run name, phase, {build run: phase})."""
    store = open_store()
    default_cluster, work = _cluster(store, work, volumes)
    cluster = cluster or default_cluster
    before = set(cluster["applied"])
    name = run_name("push")
    wf = {"metadata": {"name": name}, "spec": {"workflowTemplateRef": {"name": push.NAME}, "arguments": {
        "parameters": [{"name": "payload", "value": json.dumps(payload)}, {"name": "image-tag", "value": image_tag},
                       {"name": "image-prefix", "value": image_prefix}]}}}
    phase = LocalRun(wf, cluster, work).run()
    return name, phase, {n: p for n, p in cluster["applied"].items() if n not in before}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the rendered workflows with Docker, as a cluster would.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--tag", help="build tag (and spec name): run it as `make submit` starts it")
    what.add_argument("--payload", type=Path, help="a push webhook's JSON body: run what the git trigger starts")
    p.add_argument("--image-tag", help=f"tag of the qslm-* images (default: {IMAGE_TAG})")
    p.add_argument("--image-prefix", default="", help="registry prefix of the images, ending in '/'")
    p.add_argument("--work", type=Path, help="scratch folder (default .work/local-run)")
    p.add_argument("--allow-dirty", action="store_true", help="use the working tree's data/ with local changes")
    args = p.parse_args(argv)
    try:
        if args.tag:
            name, phase = local_run(args.tag, image_tag=args.image_tag, image_prefix=args.image_prefix,
                                    work=args.work, allow_dirty=args.allow_dirty)
        else:
            if not args.image_tag:
                raise RunError("--payload needs --image-tag: a push builds no images")
            try:
                payload = json.loads(args.payload.read_text())
            except (OSError, ValueError) as exc:
                raise RunError(f"{args.payload}: cannot read a JSON payload ({exc})") from None
            name, phase, builds = local_push(payload, image_tag=args.image_tag, image_prefix=args.image_prefix,
                                             work=args.work)
            for build, build_phase in builds.items():
                print(f"{build}: {build_phase}")
    except QslmError as exc:
        print(f"local_run: error: {exc}", file=sys.stderr)
        return 2
    print(f"\n{name}: {phase}")
    return 0 if phase == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
