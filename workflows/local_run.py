"""python -m workflows.local_run --version smoke [--image-tag TAG] [--work DIR]

Runs the rendered WorkflowTemplate (workflows/rendered/pipeline.yaml) without a cluster: the DAG's tasks in
dependency order, each task's container (image, command, args with parameters substituted) run with Docker,
its artifacts moved the way Argo moves key-only S3 artifacts, against the store in QSLM_STORE (s3://bucket,
with S3_ENDPOINT_URL reachable from the host network). It tests the workflow's wiring against the real images.

What it emulates: parameters, `depends` and `when`, key-only S3 input/output artifacts (folders with archive
none, files, tar.gz with Argo's unpack rule), `from` artifacts, optional artifacts, git input artifacts, output
parameters, emptyDir (/dev/shm as --shm-size), PVCs as host folders, the chart's Secret/ConfigMap env, and
ARGO_PROGRESS_FILE. What it does not: retries, GPUs (the jobs fall back to CPU), mutexes, deadlines, metrics.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

from jobs.core.errors import QslmError
from jobs.core.registry import previous_build
from jobs.core.store import StoreError, open_store
from workflows import pipeline
from workflows.submit import REPO, SubmitError, data_snapshot, git_state, run_name

RENDERED = REPO / "workflows" / "rendered" / "pipeline.yaml"
VARIABLE = re.compile(r"\{\{\s*([^{}=]+?)\s*\}\}")
PROGRESS_DIR = "/var/run/argo"  # Argo sets ARGO_PROGRESS_FILE=/var/run/argo/progress; the jobs write N/M there


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
    """Evaluate Argo's small `depends`/`when` language: names, literals, == != && || ! and parentheses."""
    py = expression.replace("&&", " and ").replace("||", " or ")
    py = re.sub(r"!(?!=)", " not ", py)
    return bool(eval(py, {"__builtins__": {}}, names))  # our own template's expressions, never user input


def depends_met(depends: str, phases: dict[str, str]) -> bool:
    """`a.Succeeded || a.Failed`, or a bare `a` (Argo: a succeeded or was skipped), against the phases so far."""
    def value(m):
        phase, result = phases[m.group(1)], m.group(2)
        ok = phase in ("Succeeded", "Skipped") if result is None else phase == result.replace("Errored", "Error")
        return f" {ok} "
    return _boolean(re.sub(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:\.(\w+))?", value, depends), {})


def when_met(when: str) -> bool:
    return _boolean(when, {})


def download(store, art: dict, dest: Path) -> bool:
    """Fetch a key-only S3 artifact to dest as Argo does; False when the key is absent."""
    key = art["s3"]["key"]
    if key.endswith("/"):
        found = store.list(key)
        for k in found:
            store.get_file(k, dest / k[len(key):])
        return bool(found)
    if not store.exists(key):
        return False
    blob = dest.with_name(dest.name + ".download")
    store.get_file(key, blob)
    if tarfile.is_tarfile(blob):  # Argo unpacks a tarball; one top entry becomes the artifact's path itself
        unpack = dest.with_name(dest.name + ".tmpdir")
        with tarfile.open(blob) as tf:
            tf.extractall(unpack, filter="data")
        entries = list(unpack.iterdir())
        (entries[0] if len(entries) == 1 else unpack).rename(dest)
        shutil.rmtree(unpack, ignore_errors=True)
        blob.unlink()
    else:
        blob.rename(dest)
    return True


def upload(store, art: dict, src: Path) -> None:
    """Save an output artifact under its key as Argo does: files as-is with archive none, else one tar.gz."""
    key = art["s3"]["key"]
    if "none" in art.get("archive", {}):
        if src.is_dir():
            for f in sorted(p for p in src.rglob("*") if p.is_file()):
                store.put_file(key + f.relative_to(src).as_posix(), f)
        else:
            store.put_file(key, src)
        return
    buf = io.BytesIO()  # Argo's default: tar.gz with the path's base name as the one top entry
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(src, arcname=src.name)
    store.put_bytes(key, buf.getvalue())


class LocalRun:
    def __init__(self, template: dict, workflow: dict, store, work: Path, secrets: dict, configmaps: dict,
                 volumes: Path):
        self.spec = template["spec"]
        self.templates = {t["name"]: t for t in self.spec["templates"]}
        self.name = workflow["metadata"]["name"]
        given = {p["name"]: p.get("value") for p in workflow["spec"]["arguments"]["parameters"]}
        declared = {p["name"]: p.get("value") for p in self.spec["arguments"]["parameters"]}
        missing = [n for n in declared if given.get(n, declared[n]) is None]
        if missing:
            raise RunError(f"workflow gives no value for {missing}")
        self.values = {f"workflow.parameters.{n}": given.get(n, v) for n, v in declared.items()}
        self.values["workflow.name"] = self.name
        self.store, self.work, self.secrets, self.configmaps, self.volumes = store, work, secrets, configmaps, volumes
        self.phases: dict[str, str] = {}
        self.results: dict[str, dict] = {}  # task -> {exitCode, artifacts: {name: artifact}, parameters: {...}}

    def _git_clone(self, git: dict, dest: Path) -> None:
        subprocess.run(["git", "clone", "-q", git["repo"], str(dest)], check=True)
        subprocess.run(["git", "-c", "advice.detachedHead=false", "checkout", "-q", git["revision"]], cwd=dest,
                       check=True)

    # ------------------------------------------------------------------ one task
    def _env(self, container: dict) -> list[str]:
        env = {"ARGO_PROGRESS_FILE": PROGRESS_DIR + "/progress"}
        for src in container.get("envFrom", []):
            env.update(self.configmaps[src["configMapRef"]["name"]])
        for e in container.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            env[e["name"]] = self.secrets[ref["name"]][ref["key"]] if ref else e["value"]
        return [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]

    def _stage_inputs(self, task: dict, t: dict, folder: Path) -> dict[str, Path]:
        """Fetch the task's input artifacts into folder/in/; returns {container path: host path}."""
        mounts: dict[str, Path] = {}
        given = {a["name"]: a for a in task.get("arguments", {}).get("artifacts", [])}
        for art in t.get("inputs", {}).get("artifacts", []):
            source = given.get(art["name"], art)
            if "from" in source:  # {{tasks.<task>.outputs.artifacts.<name>}}
                producer, _, _, name = source["from"].strip("{}").split(".")[1:]
                source = self.results[producer]["artifacts"][name]
            dest = folder / "in" / art["name"] / Path(art["path"]).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if "git" in source:
                self._git_clone(source["git"], dest)
            elif not download(self.store, source, dest):
                if art.get("optional"):
                    continue
                raise RunError(f"task {task['name']}: input artifact {art['name']} not found at key "
                               f"{source['s3']['key']}")
            mounts[art["path"]] = dest
        return mounts

    def _volumes(self, t: dict) -> tuple[dict[str, Path], list[str]]:
        """Host folders for the template's volume mounts, and docker options (/dev/shm size)."""
        claims = {c["metadata"]["name"] for c in self.spec.get("volumeClaimTemplates", [])}
        volumes = {v["name"]: v for v in t.get("volumes", [])} | {c: {"name": c, "claim": True} for c in claims}
        mounts, options = {}, []
        for vm in t["container"].get("volumeMounts", []):
            v = volumes[vm["name"]]
            if v.get("emptyDir", {}).get("medium") == "Memory" and vm["mountPath"] == "/dev/shm":
                options += ["--shm-size", v["emptyDir"].get("sizeLimit", "64Mi").replace("Gi", "g").replace("Mi", "m")]
            elif v.get("claim") or "emptyDir" in v:  # per run, like a volumeClaimTemplate
                mounts[vm["mountPath"]] = self.work / "volumes" / vm["name"]
            else:  # an existing claim outlives runs (the model cache)
                mounts[vm["mountPath"]] = self.volumes / v["persistentVolumeClaim"]["claimName"]
        return mounts, options

    def run_task(self, task: dict) -> None:
        task, t = substitute(task, self._scope()), substitute(self.templates[task["template"]], self._scope())
        folder = self.work / task["name"]
        shutil.rmtree(folder, ignore_errors=True)
        writable, options = self._volumes(t)
        writable |= {"/out": folder / "out", PROGRESS_DIR: folder / "argo"}
        for host in writable.values():  # the images run as a non-root user, as in the cluster
            host.mkdir(parents=True, exist_ok=True)
            host.chmod(0o777)
        mounts = writable | self._stage_inputs(task, t, folder)
        c = t["container"]
        docker = ["docker", "run", "--rm", "--network", "host", "--name", f"{self.name}-{task['name']}", *options]
        for path, host in sorted(mounts.items()):
            docker += ["-v", f"{host.resolve()}:{path}"]
        docker += self._env(c) + ["--entrypoint", c["command"][0], c["image"], *c["command"][1:], *c.get("args", [])]
        print(f"\n==> {task['name']}: {c['image']} {' '.join(c['command'] + c.get('args', []))}", flush=True)
        started = time.monotonic()
        code = subprocess.run(docker).returncode
        result = {"exitCode": code, "artifacts": {}, "parameters": {}}
        for art in t.get("outputs", {}).get("artifacts", []):  # saved whatever the exit code, as Argo does
            host = self._host_path(art["path"], mounts)
            if host.exists():
                upload(self.store, art, host)
                result["artifacts"][art["name"]] = art
            elif not art.get("optional") and code == 0:
                code = result["exitCode"] = 1
                print(f"    output artifact {art['name']}: {art['path']} was not written", flush=True)
        for p in t.get("outputs", {}).get("parameters", []):
            host = self._host_path(p["valueFrom"]["path"], mounts)
            result["parameters"][p["name"]] = host.read_text() if host.is_file() else p["valueFrom"].get("default")
        self.results[task["name"]] = result
        self.phases[task["name"]] = "Succeeded" if code == 0 else "Failed"
        progress = folder / "argo" / "progress"
        print(f"<== {task['name']}: {self.phases[task['name']]} (exit {code}, {time.monotonic() - started:.0f} s"
              f"{', progress ' + progress.read_text().strip() if progress.is_file() else ''})", flush=True)

    @staticmethod
    def _host_path(path: str, mounts: dict[str, Path]) -> Path:
        base = max((p for p in mounts if path == p or path.startswith(p.rstrip("/") + "/")), key=len, default=None)
        if base is None:
            raise RunError(f"{path} is not under a mounted folder; the local runner cannot collect it")
        return mounts[base] / os.path.relpath(path, base)

    # ------------------------------------------------------------------ the DAG
    def run(self) -> str:
        dag = self.templates[self.spec["entrypoint"]]["dag"]["tasks"]
        pending = list(dag)
        while pending:
            ready = [t for t in pending if all(d in self.phases for d in re.findall(
                r"([A-Za-z0-9-]+)(?:\.\w+)?", t.get("depends", "")))]
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
                    self.run_task(task)
                    continue
                print(f"--- {name}: {self.phases[name]}", flush=True)
        handled = {d for t in dag for d in re.findall(r"([A-Za-z0-9-]+)\.Failed", t.get("depends", ""))
                   if self.phases.get(t["name"]) == "Succeeded"}
        failed = [n for n, p in self.phases.items() if p == "Failed" and n not in handled]
        return "Failed" if failed else "Succeeded"

    def _scope(self) -> dict:
        return self.values | {f"tasks.{n}.exitCode": str(r["exitCode"]) for n, r in self.results.items()}


def store_objects(env=os.environ) -> tuple[dict, dict]:
    """The chart's Secret and ConfigMap for the store, made from this machine's store settings."""
    secrets = {pipeline.STORE_SECRET: {"accesskey": env.get("AWS_ACCESS_KEY_ID", ""),
                                       "secretkey": env.get("AWS_SECRET_ACCESS_KEY", "")},
               pipeline.GIT_SECRET: {"username": "", "password": ""}}
    config = {pipeline.STORE_CONFIG: {"QSLM_STORE": env["QSLM_STORE"],
                                      "S3_ENDPOINT_URL": env.get("S3_ENDPOINT_URL", ""),
                                      "AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION", "us-east-1")}}
    return secrets, config


def local_run(tag: str, *, image_tag: str | None = None, image_prefix: str = "", repo: Path | None = None,
              work: Path | None = None, volumes: Path | None = None, git_repo: str = "",
              allow_dirty: bool = False) -> tuple[str, str]:
    """Run build `tag` as the cluster would; returns (run name, final phase)."""
    repo = repo or REPO
    store = open_store()
    if not store.url.startswith("s3://"):
        raise RunError(f"QSLM_STORE is {store.url}: the local runner emulates Argo's S3 artifacts; give s3://bucket")
    git = git_state(repo)
    if git["dirty"] and not allow_dirty and not git_repo:
        raise RunError("data/ has uncommitted changes; commit them or pass --allow-dirty")
    name = run_name(tag)
    if not git_repo:  # what `make submit` uploads; a git-triggered run makes it in its checkout task
        store.put_bytes(pipeline.DATA_KEY.replace("{{workflow.name}}", name),
                        data_snapshot(repo, None if git["dirty"] else git["commit"]))
    wf = pipeline.run_workflow(tag, tag, image_tag or tag, git["commit"], name=name, git_dirty=git["dirty"],
                               data_hash=git["data_hash"], previous=previous_build(store, tag) or "",
                               image_prefix=image_prefix, git_repo=git_repo).to_dict()
    work = (work or REPO / ".work" / "local-run") / name
    secrets, configmaps = store_objects()
    runner = LocalRun(yaml.safe_load(RENDERED.read_text()), wf, store, work, secrets, configmaps,
                      volumes or work.parent / "volumes")
    return name, runner.run()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the rendered workflow with Docker, without a cluster.")
    p.add_argument("--version", required=True, help="build tag (and spec name)")
    p.add_argument("--image-tag", help="tag of the qslm-* images (default: the build tag)")
    p.add_argument("--image-prefix", default="", help="registry prefix of the images, ending in '/'")
    p.add_argument("--work", type=Path, help="scratch folder (default .work/local-run)")
    p.add_argument("--git-repo", default="", help="clone data/ from this repository (the git-trigger path)")
    p.add_argument("--allow-dirty", action="store_true", help="use the working tree's data/ with local changes")
    args = p.parse_args(argv)
    try:
        name, phase = local_run(args.version, image_tag=args.image_tag, image_prefix=args.image_prefix,
                                work=args.work, git_repo=args.git_repo, allow_dirty=args.allow_dirty)
    except (RunError, SubmitError, StoreError) as exc:
        print(f"local_run: error: {exc}", file=sys.stderr)
        return 2
    print(f"\n{name}: {phase}")
    return 0 if phase == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
