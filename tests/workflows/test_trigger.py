"""GitOps: which tags a push builds (workflows/trigger.py), on GitHub and Gitea push payloads as their servers send
them (tests/workflows/payloads/), and the command the push workflow's first step runs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.core.store import keys
from jobs.core.store.backends import open_store
from workflows import trigger

REPO = Path(__file__).resolve().parents[2]
PAYLOADS = Path(__file__).parent / "payloads"


def load(name: str) -> dict:
    return json.loads((PAYLOADS / name).read_text())


def tags(name: str, specs=("v1",), exists=lambda tag: False) -> list[str]:
    builds, _ = trigger.plan(trigger.parse_push(load(name)), list(specs), "main", exists)
    return [b.tag for b in builds]


def test_a_pushed_spec_builds_its_tag():
    assert tags("github-push-new-spec.json") == ["v2"]


def test_changed_documents_or_eval_suites_build_the_listed_specs_at_the_commit():
    after = load("github-push-documents.json")["after"]
    assert tags("github-push-documents.json", specs=("v1", "smoke")) == [f"v1-{after[:8]}", f"smoke-{after[:8]}"]
    builds, _ = trigger.plan(trigger.parse_push(load("github-push-documents.json")), ["v1"])
    assert (builds[0].spec, builds[0].why) == ("v1", "data/eval/core.yaml and 2 more changed")


def test_gitea_spec_and_documents_in_one_push_newest_commit_first():
    payload = load("gitea-push-spec-and-documents.json")
    builds, notes = trigger.plan(trigger.parse_push(payload), ["v1"])
    assert [(b.tag, b.spec) for b in builds] == [("v3", "v3"), (f"v1-{payload['after'][:8]}", "v1")]
    assert any("'v3 final' is not a valid build tag" in n for n in notes)


@pytest.mark.parametrize("name, why", [
    ("github-push-code-only.json", "nothing to build"),
    ("github-push-other-branch.json", "refs/heads/experiment-r64 is not refs/heads/main"),
    ("github-push-delete-branch.json", "is not refs/heads/main"),
    ("gitea-push-spec-added-then-removed.json", "nothing to build"),  # v4.yaml is gone at the pushed commit
])
def test_pushes_that_build_nothing(name, why):
    builds, notes = trigger.plan(trigger.parse_push(load(name)), ["v1"])
    assert builds == [] and any(why in n for n in notes), notes


def test_a_deleted_branch_builds_nothing_even_on_the_watched_branch():
    payload = load("github-push-delete-branch.json") | {"ref": "refs/heads/main"}
    builds, notes = trigger.plan(trigger.parse_push(payload), ["v1"])
    assert builds == [] and notes == ["refs/heads/main was deleted: nothing to build"]


def test_a_payload_listing_only_some_commits_builds_the_listed_specs_and_says_why():
    """Gitea sends at most 5 commits by default (total_commits says how many there were)."""
    payload = load("gitea-push-truncated.json")
    push = trigger.parse_push(payload)
    assert not push.complete and payload["total_commits"] == 7
    builds, notes = trigger.plan(push, ["v1"])
    assert [b.tag for b in builds] == [f"v1-{payload['after'][:8]}"]
    assert any("only some of the pushed commits" in n and "make submit" in n for n in notes)


def test_a_second_delivery_builds_nothing_new():
    first = tags("github-push-new-spec.json")
    assert tags("github-push-new-spec.json", exists=lambda tag: tag in first) == []
    builds, notes = trigger.plan(trigger.parse_push(load("github-push-new-spec.json")), ["v1"], "main",
                                 lambda tag: True)
    assert notes == ["v2: already complete in the store; a tag is immutable, so nothing to do"]


def test_not_a_push_payload_names_the_file(tmp_path, capsys):
    bad = tmp_path / "ping.json"
    bad.write_text(json.dumps({"zen": "Design for failure.", "hook_id": 1}))
    assert trigger.main(["plan", "--payload", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"trigger: error: {bad}: not a push event payload") and "X-GitHub-Event push" in err
    bad.write_text("{not json")
    assert trigger.main(["plan", "--payload", str(bad)]) == 2
    assert "cannot read a JSON payload" in capsys.readouterr().err


def test_command_prints_the_tags_one_per_line_with_the_charts_specs():
    """What a reviewer runs: the default specs are the chart's values (trigger.specs)."""
    for name, expected in [("github-push-new-spec.json", "v2\n"), ("github-push-code-only.json", "")]:
        proc = subprocess.run([sys.executable, "-m", "workflows.trigger", "plan", "--payload", str(PAYLOADS / name)],
                              cwd=REPO, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == expected
    after = load("github-push-documents.json")["after"][:8]
    proc = subprocess.run([sys.executable, "-m", "workflows.trigger", "plan", "--payload",
                           str(PAYLOADS / "github-push-documents.json")], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout == f"v1-{after}\n"  # charts/quantum-slm/values.yaml lists v1


def test_the_workflow_step_skips_complete_tags_and_writes_the_fan_out(s3_env, tmp_path, monkeypatch):
    """`plan --store --json` as the push workflow runs it: complete tags are left out, each build gets a fixed run
    name (so applying it twice is one Workflow) and the build to compare with."""
    store = open_store()
    for tag, created in (("v1", "2026-11-01"), ("v3", "2026-11-02")):  # committed builds (schema-1 layout)
        report = {"path": "metrics.json", "sha256": hashlib.sha256(b"{}").hexdigest(), "bytes": 2}
        store.put_bytes(keys.artifact_prefix(tag, "report") + "metrics.json", b"{}")
        store.put_bytes(keys.manifest_key(tag), json.dumps({"tag": tag, "status": "passed", "created_at": created,
                                                             "artifacts": {"report": [report]}}).encode())
    monkeypatch.setenv("QSLM_TRIGGER_SPECS", "v1")
    out = tmp_path / "out" / "builds.json"
    payload = load("gitea-push-spec-and-documents.json")
    assert trigger.main(["plan", "--payload", str(PAYLOADS / "gitea-push-spec-and-documents.json"), "--store",
                         "--json", str(out), "--image-tag", "v1"]) == 0
    (record,) = json.loads(out.read_text())  # v3 is complete: only the documents' build
    short = payload["after"][:8]
    assert record == {"name": f"qslm-v1-{short}-push", "tag": f"v1-{short}", "spec": "v1",
                      "commit": payload["after"], "short": short, "repo": payload["repository"]["clone_url"],
                      "previous": "v3", "previous_report": keys.artifact_prefix("v3", "report") + "metrics.json",
                      "image_tag": "v1", "image_prefix": ""}
    assert set(record) == set(trigger.BUILD_FIELDS)


def test_without_an_image_tag_a_push_runs_the_one_image_set_the_readme_builds(tmp_path):
    """Issue 23: the default was the spec's name (qslm-*:v1), which nothing builds, so a push started nothing."""
    from workflows.names import IMAGE_TAG

    out = tmp_path / "builds.json"
    assert trigger.main(["plan", "--payload", str(PAYLOADS / "github-push-new-spec.json"), "--specs", "",
                         "--json", str(out)]) == 0
    assert [r["image_tag"] for r in json.loads(out.read_text())] == [IMAGE_TAG]
    readme = (Path(trigger.__file__).resolve().parents[1] / "README.md").read_text()
    assert f"make images VERSION={IMAGE_TAG} " in readme
