"""python -m workflows.submit --tag v2[,v3...] [--wait] [--build-images [--registry REG | --k3s-import]]

Starts builds on the cluster, one Workflow per tag (what `make submit VERSION=v2,v3` runs); they run side by
side, their GPU steps limited by the chart's GPU semaphore (the cluster's GPU count). For each tag:
  1. checks the build spec data/builds/<spec>.yaml and that the tag is not already complete in the store;
  2. checks that the cluster's WorkflowTemplate is the one in workflows/pipeline.py (same definition digest).
     The chart owns it (so the git trigger runs the same pipeline): when it differs, upgrade the chart;
  3. packs data/ as committed at HEAD (a tar.gz) and uploads it as runs/<run>/checkout/data.tgz, which every
     step mounts: the cluster builds exactly that commit's spec, documents and eval suite;
  4. submits a Workflow referencing the template through the Argo Server API; prints its name and UI link.
--wait follows the runs to their end: exit 0 when all Succeeded, 3 when the only failures are failed gates.

Environment (Hera reads none of these itself, so they are mapped here, as the argo CLI reads them):
  ARGO_SERVER        host:port or URL of the Argo Server, with its base path if any (https://host/argo/); https
                     unless ARGO_SECURE=false or http:// given; ARGO_BASE_HREF is the base path too
  ARGO_TOKEN         bearer token ("Bearer ..." or the bare token)
  ARGO_INSECURE_SKIP_VERIFY=true  accept the self-signed certificate a stock argo-server makes for itself
  ARGO_NAMESPACE     namespace of the workflows (default argo)
  QSLM_STORE=s3://bucket, S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: the cluster's MinIO bucket
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import requests
import urllib3
from hera.exceptions import Forbidden, HeraException, NotFound, Unauthorized
from hera.workflows import WorkflowsService
from hera.workflows.models import WorkflowCreateRequest

from jobs.core.repo import REPO_ROOT
from jobs.core.store import keys
from jobs.core.errors import QslmError
from jobs.core.store.registry import RegistryError, previous_build, previous_report_key, refuse_complete
from jobs.core.spec.metrics import GATE_FAILED
from jobs.core.spec.tags import TAG_RULE, is_tag
from jobs.core.spec.schema import SpecError
from jobs.core.spec.load import load_spec
from jobs.core.store.backends import StoreError, open_store
from workflows import names
from workflows.names import IMAGE_TAG
from workflows.pipeline import NAME, pipeline_template, run_workflow
from workflows.steps import DATA_KEY, DIGEST_ANNOTATION

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
        if not self.verify_ssl:  # asked for with ARGO_INSECURE_SKIP_VERIFY: no warning on every request
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return WorkflowsService(host=self.host, token=self.token, namespace=self.namespace, verify_ssl=self.verify_ssl)

    def ui_link(self, name: str) -> str:
        return f"{self.host}workflows/{self.namespace}/{name}"


def argo_from_env(env=os.environ) -> Argo:
    """The Argo Server as the argo CLI finds it. The host ends in '/', so Hera's requests keep its base path."""
    server = env.get("ARGO_SERVER", "").strip().rstrip("/")
    if not server:
        sudo = (" (sudo drops your environment: run make submit without sudo; with K3S=1 it asks for sudo only "
                "to import the images)") if env.get("SUDO_USER") else ""
        raise SubmitError("ARGO_SERVER is not set: give the Argo Server's address, e.g. "
                          "`kubectl -n argo port-forward svc/argo-server 2746` and ARGO_SERVER=localhost:2746" + sudo)
    if "://" not in server:
        server = ("http://" if env.get("ARGO_SECURE", "true").lower() == "false" else "https://") + server
    base = env.get("ARGO_BASE_HREF", "").strip().strip("/")
    if base and not server.endswith("/" + base):
        server += "/" + base
    server += "/"
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


def data_state(repo: Path) -> dict:
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
    return names.run_name(tag, (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S"))


def _call(argo: Argo, what: str, fn, *args, **kw):
    """One Argo Server request, with errors that say what to fix."""
    try:
        return fn(*args, **kw)
    except requests.exceptions.SSLError:
        raise SubmitError(f"the Argo Server at {argo.host} has a certificate this machine does not trust ({what}); "
                          f"a stock argo-server makes a self-signed one: set ARGO_INSECURE_SKIP_VERIFY=true (as for "
                          f"the argo CLI), or ARGO_SECURE=false for a server started with --secure=false") from None
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
    except NotFound:
        raise  # the caller knows what a missing object means
    except HeraException as exc:
        raise SubmitError(f"the Argo Server at {argo.host} refused the request while {what}: {exc}") from None


def check_template(argo: Argo, service: WorkflowsService) -> str:
    """The cluster's WorkflowTemplate must be this checkout's: the chart owns it (the git trigger runs it too), so
    make submit never writes it. Returns its digest."""
    want = pipeline_template().annotations[DIGEST_ANNOTATION]
    upgrade = (f"upgrade the chart from this checkout (make cluster, or helm upgrade <release> charts/quantum-slm "
               f"-n {argo.namespace} --reuse-values)")
    try:
        current = _call(argo, "reading the WorkflowTemplate", service.get_workflow_template, NAME, argo.namespace)
    except NotFound:
        raise SubmitError(f"no WorkflowTemplate {NAME} in namespace {argo.namespace!r}: install the chart there "
                          f"(make cluster), or set ARGO_NAMESPACE to its namespace") from None
    have = (current.metadata.annotations or {}).get(DIGEST_ANNOTATION)
    if have != want:
        raise SubmitError(f"the cluster's WorkflowTemplate {NAME} differs from workflows/pipeline.py at this checkout "
                          f"(digest {str(have)[:12]} vs {want[:12]}): {upgrade}")
    return want


def build_images(image_tag: str, registry: str, k3s_import: bool) -> None:
    """images/build_images.py (`make images`): pushed to the registry, or loaded into this node's k3s. The import
    writes k3s's images folder, which needs root: only that command runs through sudo, so make submit itself keeps
    the caller's ARGO_* and AWS_* variables (sudo would drop them)."""
    cmd = [sys.executable, str(REPO_ROOT / "images" / "build_images.py"), "--tag", image_tag]
    if k3s_import and os.geteuid() != 0:
        cmd = ["sudo", *cmd]
    if registry:
        cmd += ["--registry", registry, "--push"]
    if k3s_import:
        cmd += ["--k3s-import"]
    if subprocess.run(cmd, cwd=REPO_ROOT).returncode != 0:
        raise SubmitError(f"building the images failed: {' '.join(cmd)}")


@dataclass(frozen=True)
class Planned:
    tag: str
    spec: str
    previous: str
    previous_report: str  # store key of the previous build's report/metrics.json, checked against its manifest


def check(tag: str, spec: str, repo: Path, store, previous: str | None) -> Planned:
    """Everything about one build that can be refused before anything is sent: spec, commit, tag, previous."""
    builds = repo / "data" / "builds"
    known = ", ".join(sorted(p.stem for p in builds.glob("*.yaml"))) or "(none)"
    for what, value in (("build tag", tag), ("spec name", spec)):
        if not is_tag(value):
            raise SubmitError(f"{value[:80]!r} is not a valid {what} ({TAG_RULE}). Build specs: {known}")
    if not (builds / f"{spec}.yaml").is_file():
        raise SubmitError(f"no build spec for {spec!r}: {builds / (spec + '.yaml')} does not exist. "
                          f"Build specs: {known}")
    try:
        loaded = load_spec(builds / f"{spec}.yaml")
    except SpecError as exc:
        raise SubmitError(str(exc)) from None
    try:
        refuse_complete(store, tag, SubmitError, spec)
        if previous is None:
            previous = previous_build(store, tag, loaded) or ""  # of the same lineage, or the spec's previous:
        report = previous_report_key(store, previous)
    except RegistryError as exc:
        raise SubmitError(f"--previous {previous}: {exc}") from None
    except StoreError as exc:
        raise SubmitError(f"store: {exc}") from None
    return Planned(tag, spec, previous, report)


def submit(tags: list[str], argo: Argo, *, spec: str | None = None, image_tag: str | None = None,
           image_prefix: str = "", previous: str | None = None, allow_dirty: bool = False, repo: Path | None = None,
           store=None) -> list[str]:
    """Checks every tag, then the cluster's template, then uploads data/ and submits one Workflow per tag, side by
    side. Returns the runs' names."""
    repo = repo or REPO_ROOT
    if spec and len(tags) > 1:
        raise SubmitError(f"--spec names one spec, but {len(tags)} tags were given: give one tag per spec")
    git = data_state(repo)
    if git["dirty"] and not allow_dirty:
        raise SubmitError("data/ has uncommitted changes; the cluster builds a commit. Commit them, or pass "
                          "--allow-dirty to build the working tree's data/ (recorded as dirty in the manifest).")
    store = store or open_store()
    if not store.url.startswith("s3://"):
        raise SubmitError(f"QSLM_STORE is {store.url}, a local folder: point it at the cluster's MinIO bucket "
                          f"(QSLM_STORE=s3://<bucket>, S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
    planned = [check(tag, spec or tag, repo, store, previous) for tag in tags]
    if not git["dirty"]:
        for p in planned:
            try:
                _git(repo, "cat-file", "-e", f"HEAD:data/builds/{p.spec}.yaml")
            except SubmitError:
                raise SubmitError(f"data/builds/{p.spec}.yaml is not committed: commit it first") from None
    service = argo.service()
    check_template(argo, service)
    snapshot = data_snapshot(repo, None if git["dirty"] else git["commit"])
    names = []
    for p in planned:
        name = run_name(p.tag)
        try:
            store.put_bytes(DATA_KEY.replace("{{workflow.name}}", name), snapshot)
        except StoreError as exc:
            raise SubmitError(f"store: {exc}") from None
        wf = run_workflow(p.tag, p.spec, image_tag or IMAGE_TAG, git["commit"], name=name, git_dirty=git["dirty"],
                          data_hash=git["data_hash"], previous=p.previous, previous_report=p.previous_report,
                          image_prefix=image_prefix,
                          namespace=argo.namespace)
        _call(argo, "submitting the Workflow", service.create_workflow, WorkflowCreateRequest(workflow=wf.build()),
              argo.namespace)
        names.append(name)
    return names


def gate_failed_only(nodes) -> bool:
    """Whether a failed run's only failures are its gate's verdict: the verdict step failed, and every failed pod is
    a verdict or an eval that exited GATE_FAILED (eval exits 3 too when the gate fails, having written its report,
    and the build is then published as failed-gate)."""
    failed = [n for n in nodes if n.type == "Pod" and n.phase in ("Failed", "Error")]

    def exit_code(n) -> str:
        return str(n.outputs.exit_code) if n.outputs and n.outputs.exit_code is not None else ""

    def verdict(n) -> bool:
        return n.display_name.startswith("verdict")

    return any(verdict(n) for n in failed) and all(
        verdict(n) or (n.display_name.startswith("eval") and exit_code(n) == str(GATE_FAILED)) for n in failed)


def follow(argo: Argo, names: list[str], poll_s: float = 10.0) -> dict[str, str]:
    """Print phase and step changes until every run finishes; returns {run: final phase, or "GateFailed" when the
    run failed only because its build's gate failed (the verdict step's exit 3)}."""
    service, seen, done = argo.service(), {}, {}
    while len(done) < len(names):
        for name in [n for n in names if n not in done]:
            wf = _call(argo, "reading the Workflow", service.get_workflow, name, argo.namespace)
            status = wf.status
            nodes = sorted((status.nodes or {}).values() if status else [], key=lambda n: str(n.started_at))
            for node in nodes:
                if node.type in ("Pod", "Skipped") and seen.get(node.id) != (node.phase, node.progress):
                    seen[node.id] = (node.phase, node.progress)
                    where = f"{name} " if len(names) > 1 else ""
                    print(f"  {where}{node.display_name:<16} {node.phase:<10} {node.progress or ''} "
                          f"{node.message or ''}")
            if status and status.phase in FINISHED:
                gate = status.phase == "Failed" and gate_failed_only(nodes)
                done[name] = "GateFailed" if gate else status.phase
                print(f"{name}: {status.phase}{' (the gate failed)' if gate else ''} {status.message or ''}")
        if len(done) < len(names):
            time.sleep(poll_s)
    return done


def exit_status(phases: dict[str, str]) -> int:
    """0 when every run Succeeded, 3 (GATE_FAILED) when the only failures are failed gates, else 1."""
    if all(p == "Succeeded" for p in phases.values()):
        return 0
    return GATE_FAILED if all(p in ("Succeeded", "GateFailed") for p in phases.values()) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Start builds on the cluster (Argo Workflows), side by side.")
    p.add_argument("--tag", required=True, help="build tags, comma-separated, e.g. v2 or v2,v3")
    p.add_argument("--spec", help="build spec name for a single tag (default: the tag): data/builds/<spec>.yaml")
    p.add_argument("--image-tag", help=f"tag of the stage images, one set for every tag (default: {IMAGE_TAG})")
    p.add_argument("--registry", default="", help="registry of the images, e.g. registry.lan:5000 (default: "
                                                  "images imported into k3s)")
    p.add_argument("--build-images", action="store_true", help="build the images first and push them to --registry "
                                                               "(or load them into k3s with --k3s-import)")
    p.add_argument("--k3s-import", action="store_true", help="with --build-images: load them into this node's k3s")
    p.add_argument("--previous", help="build to compare with (default: the current one, else the newest passed)")
    p.add_argument("--allow-dirty", action="store_true", help="build data/ with uncommitted changes")
    p.add_argument("--wait", action="store_true", help="follow the runs until they finish")
    args = p.parse_args(argv)
    tags = [t.strip() for t in args.tag.split(",") if t.strip()]
    try:
        argo = argo_from_env()
        if args.build_images:
            build_images(args.image_tag or IMAGE_TAG, args.registry, args.k3s_import)
        names = submit(tags, argo, spec=args.spec, image_tag=args.image_tag, previous=args.previous,
                       image_prefix=args.registry.rstrip("/") + "/" if args.registry else "",
                       allow_dirty=args.allow_dirty)
        for name in names:
            print(f"submitted {name}\n  {argo.ui_link(name)}")
        if args.wait:
            return exit_status(follow(argo, names))
    except QslmError as exc:
        print(f"submit: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
