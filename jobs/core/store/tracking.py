"""Optional MLflow tracking: each committed build becomes one MLflow run, when MLFLOW_TRACKING_URI names a server.

    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 make build VERSION=v2     # publish logs the build after its commit

The setting is MLflow's own environment variable, not the spec: where a build is logged does not define the build.
Experiment: MLFLOW_EXPERIMENT_NAME, else "quantum-slm"; run name: the tag. Logged: the resolved spec as params
(flattened, `train.learning_rate`), training's per-step metrics (loss, lr, tokens_per_s, grad_norm at their step),
eval's headline metrics (adapter, base_, delta_), each arm's overall means (`eval.adapter.rougeL`) and each topic's
per arm (`topic.<topic>.adapter.rougeL`), tags (qslm.tag, git commit, dataset sha256, status, gate), the report
(report.html, metrics.json) and the training log as artifacts, and the build's store keys as links (qslm.store.*).

It speaks MLflow's REST API with the standard library, so the stage images need no mlflow package (the cluster's
publish step logs with the same code; the chart passes the URI). A tracker that is down, silent or refusing never
fails a build and costs it at most REQUEST_TIMEOUT_S: no retries, and the first failure ends the logging with one
warning line on stderr. A tracker that answers, however slowly, gets at most TRACKING_BUDGET_S in all. Artifacts need a server that proxies them (`mlflow server`, the default
since MLflow 2): a run whose artifact URI is elsewhere (s3://...) is logged without them, and says so.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from jobs.core.store import keys

REQUEST_TIMEOUT_S = 5.0  # the most one request waits: what a down or silent tracker costs a build
TRACKING_BUDGET_S = 60.0  # the most all requests take together, for a tracker that answers each in time
EXPERIMENT = "quantum-slm"
PARAM_VALUE_MAX = 6000  # MLflow's limit on a param value (characters)
BATCH = {"params": 100, "tags": 100, "metrics": 1000}  # MLflow's per-request limits for runs/log-batch
TRAIN_METRICS = ("loss", "lr", "tokens_per_s", "grad_norm")
ARMS = ("adapter", "base")
UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")  # what MLflow accepts in a metric or param name


class TrackerFailed(Exception):
    """The tracker could not be reached or refused a request (caught here: it never fails a build)."""


class _Client:
    """MLflow's REST API over urllib, every request bounded by one shared deadline."""

    def __init__(self, uri: str, request_timeout_s: float, budget_s: float):
        self.base = uri.rstrip("/")
        self.timeout = request_timeout_s
        self.deadline = time.monotonic() + budget_s
        self.headers = {}
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif user and password:
            self.headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def call(self, method: str, path: str, body: dict | bytes | None = None, query: dict | None = None) -> dict:
        left = min(self.timeout, self.deadline - time.monotonic())
        if left <= 0:
            raise TrackerFailed("its answers took longer than the tracking budget")
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        headers = dict(self.headers, **({"Content-Type": "application/json"} if isinstance(body, dict) else {}))
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=left) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            raise TrackerFailed(f"{method} {path} answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:  # refused, DNS, timeout, reset
            raise TrackerFailed(f"{getattr(exc, 'reason', exc)}") from None
        return json.loads(raw) if raw.strip() else {}


def _flatten(value, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    text = value if isinstance(value, str) else json.dumps(value)
    return {UNSAFE_KEY.sub("_", prefix)[:250]: text[:PARAM_VALUE_MAX]}


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_contents(manifest: dict, folders: dict[str, Path], store_url: str) -> dict:
    """What the run holds (params, metrics, tags, artifacts), from the committed manifest and the build's folders."""
    tag, attempt = manifest["tag"], manifest.get("attempt")
    now = int(time.time() * 1000)
    metrics = []
    for rec in _read_json(folders["adapter"] / "metrics.json") or []:
        for name in TRAIN_METRICS:
            if _number(rec.get(name)) is not None:
                metrics.append({"key": f"train.{name}", "value": _number(rec[name]), "step": int(rec["step"]),
                                "timestamp": now})
    report = _read_json(folders["report"] / "metrics.json") or {}
    flat = dict(manifest.get("metrics") or {})
    for arm in (*ARMS, "delta"):
        for name, stat in (report.get("overall", {}).get(arm) or {}).items():
            flat[f"eval.{arm}.{name}"] = (stat or {}).get("mean")
    for topic, row in (report.get("topics") or {}).items():
        flat[f"topic.{topic}.questions"] = row.get("questions")
        for arm in ARMS:
            for name, stat in (row.get(arm) or {}).items():
                flat[f"topic.{topic}.{arm}.{name}"] = stat.get("mean") if isinstance(stat, dict) else stat
    metrics += [{"key": UNSAFE_KEY.sub("_", k)[:250], "value": _number(v), "step": 0, "timestamp": now}
                for k, v in flat.items() if _number(v) is not None]
    gate = manifest.get("gate") or {}
    failed = [c.get("message", "") for c in gate.get("checks", []) if not c.get("passed")]
    url = store_url.rstrip("/")
    tags = {"qslm.tag": tag, "qslm.status": manifest.get("status", ""),
            "qslm.gate": "passed" if gate.get("passed") else "failed: " + "; ".join(failed),
            "qslm.dataset_sha256": manifest.get("dataset_sha256") or "",
            "qslm.git_commit": (manifest.get("git") or {}).get("commit") or "",
            "mlflow.source.git.commit": (manifest.get("git") or {}).get("commit") or "",
            "qslm.base_model": manifest.get("base_model") or "", "qslm.previous": manifest.get("previous") or "",
            "qslm.store.manifest": f"{url}/{keys.manifest_key(tag)}"}
    for artifact in keys.ARTIFACTS:
        tags[f"qslm.store.{artifact}"] = f"{url}/{keys.artifact_prefix(tag, artifact, attempt)}"
    tags["qslm.store.report_html"] = tags["qslm.store.report"] + "report.html"
    artifacts = {f"report/{name}": folders["report"] / name for name in ("report.html", "metrics.json", "gate.json")}
    artifacts["train/metrics.json"] = folders["adapter"] / "metrics.json"
    return {"params": _flatten(manifest.get("spec") or {}), "metrics": metrics,
            "tags": {k: v[:PARAM_VALUE_MAX] for k, v in tags.items()},
            "artifacts": {k: v for k, v in artifacts.items() if v.is_file()}}


def _experiment_id(client: _Client, name: str) -> str:
    try:
        return client.call("GET", "/api/2.0/mlflow/experiments/get-by-name",
                           query={"experiment_name": name})["experiment"]["experiment_id"]
    except TrackerFailed as exc:
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc):
            raise
    return client.call("POST", "/api/2.0/mlflow/experiments/create", {"name": name})["experiment_id"]


def _log(client: _Client, contents: dict, tag: str) -> tuple[str, str]:
    experiment = _experiment_id(client, os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT)
    run = client.call("POST", "/api/2.0/mlflow/runs/create",
                      {"experiment_id": experiment, "run_name": tag, "start_time": int(time.time() * 1000),
                       "tags": [{"key": "mlflow.runName", "value": tag}]})["run"]["info"]
    run_id, note = run["run_id"], ""
    params = [{"key": k, "value": v} for k, v in contents["params"].items()]
    tags = [{"key": k, "value": v} for k, v in contents["tags"].items()]
    for kind, items in (("params", params), ("tags", tags), ("metrics", contents["metrics"])):
        for i in range(0, len(items), BATCH[kind]):
            client.call("POST", "/api/2.0/mlflow/runs/log-batch", {"run_id": run_id, kind: items[i:i + BATCH[kind]]})
    root = run.get("artifact_uri", "")
    if root.startswith("mlflow-artifacts:"):
        path = urllib.parse.urlparse(root).path.lstrip("/")
        for name, file in contents["artifacts"].items():
            client.call("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{path}/{name}", file.read_bytes())
    else:
        note = f"; artifacts not sent (the server keeps them at {root}, which it does not proxy)"
    client.call("POST", "/api/2.0/mlflow/runs/update",
                {"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)})
    return run_id, note


def log_build(manifest: dict, folders: dict[str, Path], store_url: str, request_timeout_s: float = REQUEST_TIMEOUT_S,
              budget_s: float = TRACKING_BUDGET_S) -> str | None:
    """Log a committed build to MLflow when MLFLOW_TRACKING_URI is set; returns the run id, or None (not set,
    or the tracker failed: then one warning line, and the build goes on as if it were not set)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        return None
    tag = manifest["tag"]
    if not uri.startswith(("http://", "https://")):
        print(f"tracking: warning: MLFLOW_TRACKING_URI={uri} is not an MLflow tracking server (http:// or "
              f"https://); build {tag} was not logged. Start one with `mlflow server` (pip install -e "
              f"'.[tracking]')", file=sys.stderr)
        return None
    try:
        run_id, note = _log(_Client(uri, request_timeout_s, budget_s), run_contents(manifest, folders, store_url), tag)
    except (TrackerFailed, KeyError, ValueError) as exc:  # ValueError: an answer that is not MLflow's JSON
        print(f"tracking: warning: build {tag} was not fully logged to MLflow at {uri} ({exc}); the build itself "
              f"is complete and unaffected", file=sys.stderr)
        return None
    print(f"tracking: build {tag} logged to MLflow at {uri} as run {run_id}{note}")
    return run_id
