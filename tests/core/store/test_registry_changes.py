"""Registry changes are atomic and ordered on both backends (conditional writes, retried by the loser), and a
damaged history or current.json is reported as damage (file, line, repair) while reading commands keep working.
Real racing processes: tests/faults/test_registry_race.py."""

import json
import threading

import pytest

from jobs.core.store import keys
from jobs.core.store.cli import list_builds, main
from jobs.core.store.publish import publish
from jobs.core.store.registry import (RegistryDamage, RegistryError, current_tag, history, previous_build, promote,
    rollback)
from tests.core.conftest import stage_folders

TAGS = ("t1", "t2", "t3", "t4")


@pytest.fixture
def built(store, spec, tmp_path):
    for tag in TAGS:
        publish(spec, tag, *stage_folders(tmp_path / tag), store=store)
    return store


@pytest.fixture
def two(store, spec, tmp_path):
    for tag in TAGS[:2]:
        publish(spec, tag, *stage_folders(tmp_path / tag), store=store)
    return store


def test_put_if_writes_only_over_the_version_read(store):
    assert store.get_versioned("registry/x") == (None, None)
    assert store.put_if("registry/x", b"one", None)
    assert not store.put_if("registry/x", b"two", None)  # no longer absent
    data, version = store.get_versioned("registry/x")
    assert data == b"one" and store.put_if("registry/x", b"two", version)
    assert not store.put_if("registry/x", b"three", version)  # changed since
    assert store.get_bytes("registry/x") == b"two" and store.list("registry/") == ["registry/x"]


class Interleaved:
    """A store whose every history write first lets another promote land: the first tries always lose."""

    def __init__(self, store, rival_tags):
        self.store, self.rivals = store, list(rival_tags)

    def __getattr__(self, name):
        return getattr(self.store, name)

    def put_if(self, key, data, version):
        if key == keys.HISTORY_KEY and self.rivals:
            promote(self.store, self.rivals.pop(0))
        return self.store.put_if(key, data, version)


def test_a_change_that_loses_decides_again_on_the_newer_history(built):
    promote(built, "t1")
    event = promote(Interleaved(built, ["t2", "t3"]), "t4")
    assert event["from"] == "t3"  # decided on the history the rivals left, not on the one first read
    assert [e["tag"] for e in history(built)] == ["t1", "t2", "t3", "t4"]
    assert current_tag(built) == "t4" and json.loads(built.get_bytes(keys.CURRENT_KEY))["tag"] == "t4"
    rollback(Interleaved(built, ["t1"]))  # t1 promoted first, then the rollback pops it
    assert [e["action"] for e in history(built)][-2:] == ["promote", "rollback"] and current_tag(built) == "t4"


def test_threads_racing_leave_every_event(built):
    if not built.url.startswith("/"):
        pytest.skip("threads on the local store; S3 races run as processes in the fault tier")
    promote(built, "t1")
    errors = []

    def run(action, tag=None):
        try:
            promote(built, tag) if action == "promote" else rollback(built)
        except RegistryError as exc:
            errors.append(exc)
    threads = [threading.Thread(target=run, args=a) for a in
               [("promote", "t2"), ("promote", "t3"), ("rollback",), ("promote", "t4"), ("rollback",)] * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = history(built)
    assert len(events) == 1 + len(threads) - len(errors)
    assert all("already current" in str(e) or "nothing to roll back" in str(e) for e in errors)
    assert len({e["id"] for e in events}) == len(events)
    assert json.loads(built.get_bytes(keys.CURRENT_KEY))["tag"] == current_tag(built)


@pytest.mark.parametrize("damage, line", [
    (b'{"action": "promote", "tag": "t1"}\n{"action": "promo', 2),
    (b'<<<<<<< HEAD\n{"action": "promote", "tag": "t1"}\n', 1),
    (b'{"action": "promote", "tag": "t1"}\n{"action": "promote", "tag": "../x"}\n', 2),
    (b'{"action": "promote", "tag": "t1"}\n[1, 2]\n', 2),
    (b'\xff\xfe', 0),
])
def test_a_damaged_history_is_reported_with_its_line_and_writes_refuse(two, damage, line, capsys):
    promote(two, "t1")
    two.put_bytes(keys.HISTORY_KEY, damage)
    with pytest.raises(RegistryDamage) as err:
        promote(two, "t2")
    message = str(err.value)
    assert keys.HISTORY_KEY in message and (f"line {line}" in message if line else "not UTF-8" in message)
    assert "Repair it" in message or "Restore it" in message
    assert two.get_bytes(keys.HISTORY_KEY) == damage  # nothing was written over it
    with pytest.raises(RegistryDamage):
        rollback(two)
    # reading keeps working: current.json still names t1
    assert current_tag(two) == "t1" and "registry: warning:" in capsys.readouterr().err
    assert previous_build(two, "t9") == "t1"
    assert main(["list"]) == 0 and "* " in capsys.readouterr().out
    assert main(["promote", "t2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("promote: error: ") and "Traceback" not in err


def test_a_damaged_current_file_is_repaired_by_the_next_change(two):
    promote(two, "t1")
    two.put_bytes(keys.CURRENT_KEY, b"<<<<<<< HEAD\n{\"tag\": \"t1\"}\n=======\n")
    assert current_tag(two) == "t1"  # from the history
    promote(two, "t2")
    assert json.loads(two.get_bytes(keys.CURRENT_KEY))["tag"] == "t2"


def test_both_damaged_reading_commands_still_list_and_say_why(two, capsys):
    promote(two, "t1")
    two.put_bytes(keys.HISTORY_KEY, b"garbage\n")
    two.put_bytes(keys.CURRENT_KEY, b"{")
    with pytest.raises(RegistryDamage, match="current.json in .* is damaged"):
        current_tag(two)
    text = list_builds(two)
    assert all(t in text for t in TAGS[:2]) and "registry damaged, current build unknown" in text
    assert previous_build(two, "t9") in TAGS[:2]  # the newest passed build instead
    assert main(["show", "t1"]) == 0
