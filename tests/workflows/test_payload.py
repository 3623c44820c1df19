"""A push payload from outside is bounded and shape-checked before anything is decided (workflows/payload.py):
every problem is one line of one TriggerError, never a RecursionError or AttributeError, and no changed path
outside the repository is trusted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workflows import trigger

REPO = Path(__file__).resolve().parents[2]
PAYLOADS = Path(__file__).parent / "payloads"
AFTER = "a" * 40


def push(**fields) -> dict:
    base = {"ref": "refs/heads/main", "after": AFTER, "repository": {"clone_url": "https://x/r.git"},
            "commits": [{"timestamp": "2026-01-01T00:00:00Z", "added": [], "modified": [], "removed": []}]}
    return {**base, **fields}


def changed(*paths) -> dict:
    return push(commits=[{"timestamp": "t", "modified": list(paths)}])


def test_paths_are_normalised_before_they_are_matched():
    builds, notes = trigger.plan(trigger.parse_push(changed("data/eval/../../.git/config")), ["v1"])
    assert builds == [] and any("nothing to build" in n for n in notes)
    builds, _ = trigger.plan(trigger.parse_push(changed("data/./builds//v2.yaml")), ["v1"])
    assert [b.tag for b in builds] == ["v2"]
    builds, _ = trigger.plan(trigger.parse_push(changed("jobs/../data/raw/thesis.tex")), ["v1"])
    assert [b.tag for b in builds] == [f"v1-{AFTER[:8]}"]


@pytest.mark.parametrize("path", ["../outside.yaml", "data/../../etc/passwd", "/etc/passwd", "/data/builds/v9.yaml",
                                  "data/builds/x\0.yaml", "", "a" * 5000, 7, None, ["data/raw/x"], "."])
def test_a_path_outside_the_repository_or_not_a_path_is_refused(path):
    with pytest.raises(trigger.TriggerError) as err:
        trigger.parse_push(changed("data/raw/ok.tex", path))
    assert "commits[0].modified[1]" in str(err.value)


@pytest.mark.parametrize("fields, expected", [
    ({"commits": "data/raw/x"}, "commits: expected a list"),
    ({"commits": [5]}, "commits[0]: expected an object"),
    ({"commits": [{"added": "data/raw/x"}]}, "commits[0].added: expected a list of paths"),
    ({"commits": [{"timestamp": 5, "added": []}]}, "commits[0].timestamp: expected a string"),
    ({"repository": "r"}, "repository: expected an object"),
    ({"repository": {"clone_url": ["x"]}}, "repository.clone_url: expected a string"),
    ({"ref": 5}, "ref: expected a string"),
    ({"after": {"x": 1}}, "after: expected a commit id"),
    ({"after": "abc; rm -rf /"}, "after: expected a commit id"),
    ({"total_commits": "7"}, "total_commits: expected an integer"),
    ({"total_commits": 10**30}, "total_commits: expected an integer in [0, 10,000,000]"),
    ({"commits": [{"modified": ["data/raw/x"]}] * 4097}, "commits: expected a list of at most 4096"),
    ({"commits": [{"modified": ["data/raw/x"] * 60_000}] * 2}, "more than 100,000 changed paths"),
])
def test_wrong_shapes_are_one_line_each(fields, expected):
    with pytest.raises(trigger.TriggerError) as err:
        trigger.parse_push(push(**fields), "p.json")
    message = str(err.value)
    assert message.startswith("p.json: ") and expected in message
    assert all(line.startswith(("p.json", "  - ")) for line in message.splitlines())


def test_many_problems_are_capped():
    message = str(pytest.raises(trigger.TriggerError, trigger.parse_push,
                                push(commits=[{"added": [f"../x{i}" for i in range(500)]}])).value)
    assert len(message.splitlines()) == 22 and "and more problems" in message


def test_not_an_object_is_one_error():
    for value in ([], "push", 5, None):
        with pytest.raises(trigger.TriggerError, match="expected a JSON object"):
            trigger.parse_push(value)


def _plan(tmp_path, body: bytes) -> subprocess.CompletedProcess:
    path = tmp_path / "push.json"
    path.write_bytes(body)
    return subprocess.run([sys.executable, "-m", "workflows.trigger", "plan", "--payload", str(path), "--specs", "v1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("body, expected", [
    (b"[" * 100_000 + b"]" * 100_000, "nested more than 32 levels"),
    (json.dumps(push(extra=json.loads("[" * 40 + "]" * 40))).encode(), "nested more than 32 levels"),
    (b'{"ref": ', "cannot read a JSON payload"),
    (b"\xff\xfe", "cannot read a JSON payload"),
    (json.dumps(push(commits=[{"modified": 3}])).encode(), "commits[0].modified: expected a list of paths"),
    (json.dumps(changed("data/eval/../../../x")).encode(), "is outside the repository"),
])
def test_the_command_answers_one_error_and_exit_2(tmp_path, body, expected):
    result = _plan(tmp_path, body)
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_an_oversized_payload_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    from workflows import payload

    monkeypatch.setattr(payload, "MAX_BYTES", 1000)
    path = tmp_path / "big.json"
    path.write_text(json.dumps(push(padding="x" * 2000)))
    with pytest.raises(trigger.TriggerError, match="more than 0 MiB"):
        payload.read_payload(path, trigger.TriggerError)


def test_shipped_payloads_still_pass():
    for path in sorted(PAYLOADS.glob("*.json")):
        trigger.parse_push(json.loads(path.read_text()), path.name)
