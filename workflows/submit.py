"""python -m workflows.submit --version v2 [--wait] [--build-images [--registry REG | --k3s-import]] [--previous TAG]

Starts build <version> on the cluster (what `make submit VERSION=v2` runs):
  1. checks the build spec data/builds/<spec>.yaml and that the tag is not already complete in the store;
  2. packs data/ as committed at HEAD (a tar.gz) and uploads it as runs/<run>/checkout/data.tgz, which every
     step mounts: the cluster builds exactly that commit's spec, documents and eval suite;
  3. creates the WorkflowTemplate, or updates it when its definition digest differs from workflows/pipeline.py;
  4. submits a Workflow referencing it through the Argo Server API; prints its name and UI link; --wait
     follows it to the end (exit 0 only when it Succeeded).

Environment (Hera reads none of these itself, so they are mapped here, as the argo CLI reads them):
  ARGO_SERVER        host:port or URL of the Argo Server (https unless ARGO_SECURE=false or http:// given)
  ARGO_TOKEN         bearer token ("Bearer ..." or the bare token); ARGO_INSECURE_SKIP_VERIFY=true for self-signed
  ARGO_NAMESPACE     namespace of the workflows (default argo)
  QSLM_STORE=s3://bucket, S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: the cluster's MinIO bucket
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import re
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import requests
from hera.exceptions import Forbidden, HeraException, NotFound, Unauthorized
from hera.workflows import WorkflowsService
from hera.workflows.models import WorkflowCreateRequest, WorkflowTemplateCreateRequest, WorkflowTemplateUpdateRequest

from jobs.core import keys
from jobs.core.errors import QslmError
from jobs.core.registry import previous_build
from jobs.core.spec import TAG_PATTERN, SpecError, load_spec
from jobs.core.store import StoreError, open_store
from workflows.pipeline import DATA_KEY, DIGEST_ANNOTATION, NAME, pipeline_template, run_workflow

REPO = Path(__file__).resolve().parents[1]
FINISHED = ("Succeeded", "Failed", "Error")


class SubmitError(QslmError):
    pass


@dataclass(frozen=True)
class Argo:
    host: str
    token: str
    namespace: str
    verify_ssl: bool

    def service(self) -> WorkflowsService:
        return WorkflowsService(host=self.host, token=self.token, namespace=self.namespace, verify_ssl=self.verify_ssl)

    def ui_link(self, name: str) -> str:
        return f"{self.host}/workflows/{self.namespace}/{name}"


def argo_from_env(env=os.environ) -> Argo:
    server = env.get("ARGO_SERVER", "").strip().rstrip("/")
    if not server:
        raise SubmitError("ARGO_SERVER is not set: give the Argo Server's address, e.g. "
                          "`kubectl -n argo port-forward svc/argo-server 2746` and ARGO_SERVER=localhost:2746")
    if "://" not in server:
        server = ("http://" if env.get("ARGO_SECURE", "true").lower() == "false" else "https://") + server
    token = env.get("ARGO_TOKEN", "").strip()
    if token and not token.lower().startswith("bearer "):
        token = "Bearer " + token
    return Argo(host=server, token=token, namespace=env.get("ARGO_NAMESPACE", "").strip() or "argo",
                verify_ssl=env.get("ARGO_INSECURE_SKIP_VERIFY", "false").lower() != "true")


def _git(repo: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise SubmitError(f"git {' '.join(args)} failed in {repo}: {str(detail).strip()}") from None


def git_state(repo: Path) -> dict:
    """HEAD's commit, whether data/ differs from it, and data/'s tree hash at HEAD."""
    return {"commit": _git(repo, "rev-parse", "HEAD"),
            "dirty": bool(_git(repo, "status", "--porcelain", "--", "data")),
            "data_hash": _git(repo, "rev-parse", "HEAD:data")}


def data_snapshot(repo: Path, commit: str | None) -> bytes:
    """data/ as a tar.gz with one top folder `data` (Argo unpacks such a tarball to the artifact's path).
    commit=None takes the working tree's files (tracked and untracked, .gitignore honoured)."""
    if commit:
        tar = subprocess.run(["git", "archive", "--format=tar", commit, "data"], cwd=repo, check=True,
                             capture_output=True).stdout
    else:
        listing = _git(repo, "ls-files", "-co", "--exclude-standard", "--", "data").splitlines()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for rel in sorted(listing):
                if (repo / rel).is_file():
                    tf.add(repo / rel, arcname=rel)
        tar = buf.getvalue()
    return gzip.compress(tar, mtime=0)


def run_name(tag: str, now: datetime | None = None) -> str:
    """A Kubernetes name for the run (also the run-id under runs/ in the store)."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    return f"qslm-{re.sub(r'[^a-z0-9-]', '-', tag.lower())[:40].strip('-')}-{stamp}"


def _call(argo: Argo, what: str, fn, *args, **kw):
    """One Argo Server request, with errors that say what to fix."""
    try:
        return fn(*args, **kw)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise SubmitError(f"cannot reach the Argo Server at {argo.host} ({what}): {type(exc).__name__}. Is it "
                          f"running and ARGO_SERVER right? (kubectl -n argo port-forward svc/argo-server 2746)"
                          ) from None
    except Unauthorized:
        raise SubmitError(f"the Argo Server at {argo.host} rejected the token (401) while {what}: set ARGO_TOKEN "
                          f"to a valid token, e.g. the chart's quantum-slm-submitter token (helm status shows how)"
                          ) from None
    except Forbidden:
        raise SubmitError(f"the token may not do this in namespace {argo.namespace!r} (403) while {what}: give its "
                          f"service account the chart's submitter role, or set ARGO_NAMESPACE") from None


def sync_template(argo: Argo, service: WorkflowsService) -> str:
    """Create the WorkflowTemplate, or update it when its digest differs from the code's. Returns what it did."""
    wt = pipeline_template(namespace=argo.namespace)
    try:
        current = _call(argo, "reading the WorkflowTemplate", service.get_workflow_template, NAME, argo.namespace)
    except NotFound:
        _call(argo, "creating the WorkflowTemplate", service.create_workflow_template,
              WorkflowTemplateCreateRequest(template=wt.build()), argo.namespace)
        return "created"
    if (current.metadata.annotations or {}).get(DIGEST_ANNOTATION) == wt.annotations[DIGEST_ANNOTATION]:
        return "unchanged"
    model = wt.build()
    model.metadata.resource_version = current.metadata.resource_version
    _call(argo, "updating the WorkflowTemplate", service.update_workflow_template, NAME,
          WorkflowTemplateUpdateRequest(template=model), argo.namespace)
    return "updated"


def build_images(image_tag: str, registry: str, k3s_import: bool) -> None:
    """images/build.py (`make images`): pushed to the registry, or loaded into this node's k3s."""
    cmd = [sys.executable, str(REPO / "images" / "build.py"), "--tag", image_tag]
    if registry:
        cmd += ["--registry", registry, "--push"]
    if k3s_import:
        cmd += ["--k3s-import"]
    if subprocess.run(cmd, cwd=REPO).returncode != 0:
        raise SubmitError(f"building the images failed: {' '.join(cmd)}")


def submit(tag: str, argo: Argo, *, spec: str | None = None, image_tag: str | None = None, image_prefix: str = "",
           previous: str | None = None, allow_dirty: bool = False, repo: Path | None = None, store=None) -> str:
    """Checks, uploads data/, syncs the template and submits; returns the run's name."""
    spec, repo = spec or tag, repo or REPO
    builds = repo / "data" / "builds"
    known = ", ".join(sorted(p.stem for p in builds.glob("*.yaml"))) or "(none)"
    for what, value in (("build tag", tag), ("spec name", spec)):
        if not TAG_PATTERN.match(value):
            raise SubmitError(f"{value!r} is not a valid {what} (letters, digits, '.', '_', '-'). Build specs: {known}")
    if not (builds / f"{spec}.yaml").is_file():
        raise SubmitError(f"no build spec for {spec!r}: {builds / (spec + '.yaml')} does not exist. "
                          f"Build specs: {known}")
    try:
        load_spec(builds / f"{spec}.yaml")
    except SpecError as exc:
        raise SubmitError(str(exc)) from None
    git = git_state(repo)
    if git["dirty"] and not allow_dirty:
        raise SubmitError("data/ has uncommitted changes; the cluster builds a commit. Commit them, or pass "
                          "--allow-dirty to build the working tree's data/ (recorded as dirty in the manifest).")
    if not git["dirty"]:
        try:
            _git(repo, "cat-file", "-e", f"HEAD:data/builds/{spec}.yaml")
        except SubmitError:
            raise SubmitError(f"data/builds/{spec}.yaml is not committed: commit it first") from None
    store = store or open_store()
    if not store.url.startswith("s3://"):
        raise SubmitError(f"QSLM_STORE is {store.url}, a local folder: point it at the cluster's MinIO bucket "
                          f"(QSLM_STORE=s3://<bucket>, S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
    try:
        if store.exists(keys.manifest_key(tag)):
            raise SubmitError(f"build {tag!r} is already complete in {store.url}; a tag is immutable. Use a new "
                              f"tag (copy data/builds/{spec}.yaml to a new name).")
        if previous is None:
            previous = previous_build(store, tag) or ""
        elif previous and not store.exists(keys.artifact_prefix(previous, "report") + "metrics.json"):
            raise SubmitError(f"--previous {previous}: builds/{previous}/report/metrics.json is not in {store.url}")
        service = argo.service()
        print(f"WorkflowTemplate {NAME}: {sync_template(argo, service)}")
        name = run_name(tag)
        store.put_bytes(DATA_KEY.replace("{{workflow.name}}", name),
                        data_snapshot(repo, None if git["dirty"] else git["commit"]))
    except StoreError as exc:
        raise SubmitError(f"store: {exc}") from None
    wf = run_workflow(tag, spec, image_tag or tag, git["commit"], name=name, git_dirty=git["dirty"],
                      data_hash=git["data_hash"], previous=previous, image_prefix=image_prefix,
                      namespace=argo.namespace)
    _call(argo, "submitting the Workflow", service.create_workflow, WorkflowCreateRequest(workflow=wf.build()),
          argo.namespace)
    return name


def follow(argo: Argo, name: str, poll_s: float = 10.0) -> str:
    """Print phase and step changes until the run finishes; returns its final phase."""
    service, seen = argo.service(), {}
    while True:
        wf = _call(argo, "reading the Workflow", service.get_workflow, name, argo.namespace)
        status = wf.status
        for node in sorted((status.nodes or {}).values() if status else [], key=lambda n: str(n.started_at)):
            if node.type in ("Pod", "Skipped") and seen.get(node.id) != (node.phase, node.progress):
                seen[node.id] = (node.phase, node.progress)
                print(f"  {node.display_name:<16} {node.phase:<10} {node.progress or ''} {node.message or ''}")
        if status and status.phase in FINISHED:
            print(f"{name}: {status.phase} {status.message or ''}")
            return status.phase
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Start a build on the cluster (Argo Workflows).")
    p.add_argument("--version", required=True, help="build tag, e.g. v2")
    p.add_argument("--spec", help="build spec name (default: the tag): data/builds/<spec>.yaml")
    p.add_argument("--image-tag", help="tag of the stage images (default: the build tag)")
    p.add_argument("--registry", default="", help="registry of the images, e.g. registry.lan:5000 (default: "
                                                  "images imported into k3s)")
    p.add_argument("--build-images", action="store_true", help="build the images first and push them to --registry "
                                                               "(or load them into k3s with --k3s-import)")
    p.add_argument("--k3s-import", action="store_true", help="with --build-images: load them into this node's k3s")
    p.add_argument("--previous", help="build to compare with (default: the current one, else the newest passed)")
    p.add_argument("--allow-dirty", action="store_true", help="build data/ with uncommitted changes")
    p.add_argument("--wait", action="store_true", help="follow the run until it finishes")
    args = p.parse_args(argv)
    try:
        argo = argo_from_env()
        if args.build_images:
            build_images(args.image_tag or args.version, args.registry, args.k3s_import)
        name = submit(args.version, argo, spec=args.spec, image_tag=args.image_tag, previous=args.previous,
                      image_prefix=args.registry.rstrip("/") + "/" if args.registry else "",
                      allow_dirty=args.allow_dirty)
        print(f"submitted {name}\n  {argo.ui_link(name)}")
        if args.wait:
            return 0 if follow(argo, name) == "Succeeded" else 1
    except (SubmitError, HeraException) as exc:
        print(f"submit: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
