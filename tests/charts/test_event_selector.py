"""The chart's WorkflowEventBinding, evaluated for real: its selector and its event expressions run in Go with
the expr language (the packaged antonmedv/expr; Argo v4 uses its successor expr-lang, whose syntax is a
superset) on the push payloads of tests/workflows/payloads, with the headers GitHub and Gitea send. The selector
must let through every push the plan step would build from (workflows/trigger.py decides; this only spares a
workflow for pushes that cannot build anything)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.charts.test_chart import VALUES, render_chart
from workflows import trigger

PAYLOADS = Path(__file__).resolve().parents[1] / "workflows" / "payloads"
GOPATH = Path("/usr/share/gocode")  # where Debian's golang-*-dev packages put Go sources


@pytest.fixture(scope="module")
def expr_eval(tmp_path_factory) -> Path:
    if not shutil.which("go") or not (GOPATH / "src/github.com/antonmedv/expr").is_dir():
        pytest.skip("needs Go and the expr package: apt-get install golang-go golang-github-antonmedv-expr-dev")
    out = tmp_path_factory.mktemp("expr") / "expr-eval"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOCACHE": str(out.parent / "cache"),
           "GOFLAGS": "-mod=mod"}
    subprocess.run(["go", "build", "-o", str(out), str(Path(__file__).with_name("expr_eval.go"))], check=True,
                   env=env, capture_output=True)
    return out


def evaluate(binary: Path, expression: str, env: dict):
    proc = subprocess.run([str(binary), expression, json.dumps(env)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def event(payload: dict, header: str = "x-github-event") -> dict:
    """Argo's event expression environment: payload, lower-case X- headers as lists, the discriminator."""
    return {"payload": payload, "metadata": {header: ["push"], "x-github-delivery": ["72d3162e"]},
            "discriminator": "quantum-slm-data", "namespace": "builds"}


@pytest.fixture(scope="module")
def binding() -> dict:
    (b,) = render_chart()["workfloweventbinding.yaml"]
    return b


@pytest.mark.parametrize("name", sorted(p.name for p in PAYLOADS.glob("*.json")))
def test_selector_passes_every_push_the_plan_builds_from(expr_eval, binding, name):
    payload = json.loads((PAYLOADS / name).read_text())
    header = "x-gitea-event" if "gitea" in name else "x-github-event"
    selected = evaluate(expr_eval, binding["spec"]["event"]["selector"], event(payload, header)) == "true"
    builds, _ = trigger.plan(trigger.parse_push(payload), ["v1"], "main")
    assert selected or not builds, f"the selector drops a push the plan builds {[b.tag for b in builds]} from"
    # and it spares a workflow where nothing under data/ changed (a spec added and removed again still passes)
    assert selected is (name not in ("github-push-code-only.json", "github-push-other-branch.json",
                                     "github-push-delete-branch.json"))


def test_selector_refuses_other_events_and_discriminators(expr_eval, binding):
    payload = json.loads((PAYLOADS / "github-push-new-spec.json").read_text())
    selector = binding["spec"]["event"]["selector"]
    assert evaluate(expr_eval, selector, event(payload) | {"metadata": {"x-github-event": ["ping"]}}) == "false"
    assert evaluate(expr_eval, selector, event(payload) | {"metadata": {}}) == "false"
    assert evaluate(expr_eval, selector, event(payload) | {"discriminator": "other"}) == "false"


def test_event_expressions_give_the_parameters(expr_eval, binding):
    payload = json.loads((PAYLOADS / "github-push-new-spec.json").read_text())
    params = {p["name"]: p["valueFrom"]["event"] for p in binding["spec"]["submit"]["arguments"]["parameters"]}
    assert evaluate(expr_eval, params["image-tag"], event(payload)) == "local"
    assert evaluate(expr_eval, params["image-prefix"], event(payload)) == ""
    metadata = binding["spec"]["submit"]["metadata"]  # Argo evaluates these as expressions too
    assert evaluate(expr_eval, metadata["generateName"], event(payload)) == "qslm-push-"
    title = metadata["annotations"]["workflows.argoproj.io/title"]
    assert evaluate(expr_eval, title, event(payload)) == f"push @ {payload['after'][:8]}"
    other = render_chart(VALUES | {"trigger": {"imageTag": "v2", "imagePrefix": "reg.lan:5000/"}})
    (b,) = other["workfloweventbinding.yaml"]
    given = {p["name"]: p["valueFrom"]["event"] for p in b["spec"]["submit"]["arguments"]["parameters"]}
    assert evaluate(expr_eval, given["image-prefix"], event(payload)) == "reg.lan:5000/"
