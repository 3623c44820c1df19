"""Promote and rollback commands racing as real processes on both backends: N commands that succeed leave N
events in the history, in an order each was decided on, and `current` is the outcome of that history (one of
the racing commands' tags), in history and current.json alike."""

import json
import subprocess
import sys

import pytest

from jobs.core.store import keys
from jobs.core.store.publish import publish
from jobs.core.store.registry import _promoted_stack, current_tag, history, promote
from jobs.core.spec.load import load_spec
from jobs.core.store.backends import open_store
from tests.faults.harness import FIGURES, READY_THEN_GO_TEMPLATE, REPO, fault_env, make_build

ROUNDS = 2  # per backend
TAGS = ("r1", "r2", "r3", "r4")
READY_THEN_GO = READY_THEN_GO_TEMPLATE.format(module="jobs.core.store.cli")  # the registry CLI, held at the start


@pytest.fixture(params=["local", "s3"])
def store_url(request, tmp_path):
    return str(tmp_path / "store") if request.param == "local" else request.getfixturevalue("s3_env")


def _start(args: list[str], go, env) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", READY_THEN_GO, str(go), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def test_racing_promotes_and_rollbacks_lose_no_event(store_url, tmp_path, committed):
    store = open_store(store_url)
    committed(store)
    for i, tag in enumerate(TAGS):
        spec, folders = make_build(tmp_path / tag, seed=i, adapter_mib=0)
        publish(load_spec(spec), tag, *folders, store=store)
    promote(store, "r1")
    promote(store, "r2")
    env = fault_env(store_url)
    for race in range(ROUNDS):
        before = len(history(store))
        # three promotes racing (r3, r4 and whichever is not current), then promotes against rollbacks
        for commands in ([["promote", "r3"], ["promote", "r4"], ["promote", "r1"]],
                         [["promote", "r2"], ["rollback"], ["rollback"], ["promote", "r3"]]):
            go = tmp_path / f"go-{race}-{len(commands)}"
            procs = [_start(c, go, env) for c in commands]
            go.touch()
            results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
            FIGURES["registry commands raced"] += len(commands)
            ok = [r for r in results if r[0] == 0]
            for rc, out, err in results:
                assert "Traceback" not in err, err
                assert rc == 0 or ("already current" in err and err.startswith("promote: error: ")), err
            events = history(store)
            new = events[before:]
            assert len(new) == len(ok), (results, new)  # every command that said so left its event
            assert len({e["id"] for e in events}) == len(events)
            for event in new:  # each decided on the history before it
                stack = _promoted_stack(events[:events.index(event)])
                assert event["from"] == (stack[-1] if stack else None)
            current = current_tag(store)
            assert current == _promoted_stack(events)[-1]
            assert json.loads(store.get_bytes(keys.CURRENT_KEY))["tag"] == current
            assert current in {e["tag"] for e in new} or not new
            FIGURES["registry events written under races"] += len(new)
            before = len(events)
