"""kill -9 a publish at random points, on both backends: a tag is complete and re-hashes clean, or it is not
complete at all; the same command run again completes it; `make gc` then removes everything the killed runs
left, and nothing a manifest lists."""

import time

import pytest

from jobs.core.store import gc, keys
from jobs.core.store.registry import complete_tags, listed_keys, read_manifest, verify_build
from jobs.core.store.backends import open_store
from tests.faults.harness import FIGURES, fault_env, finish, make_build, start_publish

KILLS = 8  # per backend


@pytest.fixture(params=["local", "s3"])
def store_url(request, tmp_path):
    return str(tmp_path / "store") if request.param == "local" else request.getfixturevalue("s3_env")


def _timed_publish(spec, tag, folders, go, env) -> float:
    proc = start_publish(spec, tag, folders, go, env)
    started = time.monotonic()
    go.touch()
    rc, _, err = finish(proc)
    assert rc == 0, err
    return time.monotonic() - started


def test_a_killed_publish_never_leaves_a_wrong_build(store_url, tmp_path, rng, committed):
    store = open_store(store_url)
    committed(store)
    env = fault_env(store_url)
    spec, folders = make_build(tmp_path / "build", seed=7)
    # How long one publish takes here, from the moment it starts work: kills land uniformly over 1.2 x that.
    span = _timed_publish(spec, "reference", folders, tmp_path / "go-ref", env)
    for i in range(KILLS):
        tag, go = f"k{i}", tmp_path / f"go{i}"
        proc = start_publish(spec, tag, folders, go, env)
        delay = rng.uniform(0, 1.2 * span)
        go.touch()
        time.sleep(delay)
        proc.kill()
        rc, _, err = finish(proc)
        killed = rc == -9
        FIGURES["publish processes killed (kill -9)"] += killed
        assert killed or rc == 0, err
        complete = store.exists(keys.manifest_key(tag))
        FIGURES["killed publishes that had committed"] += killed and complete
        if complete:  # complete and clean, or not complete at all
            assert verify_build(store, tag).damaged == []
        if not complete:
            proc = start_publish(spec, tag, folders, go, env)  # the same command again
            rc, _, err = finish(proc)
            assert rc == 0 and "Traceback" not in err, err
        assert tag in complete_tags(store)
    found, _ = gc.find_garbage(store, min_age_s=0)
    FIGURES["leftovers removed by gc"] += len(found)
    gc.collect(store, found)
    owned = set().union(*(listed_keys(read_manifest(store, t), t) for t in complete_tags(store)))
    assert {k for k in store.list("builds/")} == owned and store.unfinished() == []
