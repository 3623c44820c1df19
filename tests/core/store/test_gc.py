"""`make gc` lists (and with --apply removes) exactly what no manifest names and no running publish can commit."""

import os
import time
from datetime import datetime, timedelta, timezone

from jobs.core.store import gc, keys
from jobs.core.store.cli import main
from jobs.core.store.publish import publish
from jobs.core.store.registry import listed_keys, read_manifest, verify_build
from jobs.core.store.backends import LocalStore
from tests.core.conftest import stage_folders

OLD = datetime.now(timezone.utc) - timedelta(days=3)


def _leftovers(store):
    """What interrupted and losing publishes leave: the garbage, and what must be kept."""
    loser = keys.attempt_prefix("t1", keys.new_attempt())  # lost the race for t1: its tag is taken
    old = keys.attempt_prefix("t2", keys.new_attempt(OLD))  # killed three days ago, t2 never committed
    young = keys.attempt_prefix("t3", keys.new_attempt())  # may still be publishing
    garbage = [loser + "adapter/adapter_model.safetensors", old + "dataset/train.parquet",
               "builds/t4/dataset/train.parquet",  # the layout before attempts: no publish commits it any more
               keys.artifact_prefix("t1", "report") + "report.html"]  # under a committed tag, not in its manifest
    for key in garbage + [young + "report/metrics.json", "sources/abc", "runs/r1/train/adapter/x"]:
        store.put_bytes(key, b"left over")
    return set(garbage), young + "report/metrics.json"


def test_gc_finds_what_no_manifest_names_and_spares_the_rest(store, spec, tmp_path):
    publish(spec, "t1", *stage_folders(tmp_path), store=store)
    garbage, young = _leftovers(store)
    found, kept = gc.find_garbage(store, min_age_s=gc.MIN_AGE_FLOOR_S)
    assert {g.key for g in found} == garbage
    assert any(young.rsplit("/", 3)[0] in k and "may still be publishing" in k for k in kept)
    before = set(store.list(""))
    gc.collect(store, found)
    assert set(store.list("")) == before - garbage
    owned = listed_keys(read_manifest(store, "t1"), "t1")
    assert owned <= set(store.list("")) and verify_build(store, "t1").damaged == []
    assert gc.find_garbage(store, min_age_s=gc.MIN_AGE_FLOOR_S)[0] == []


def test_unfinished_writes_are_aborted_once_old_enough(store):
    """A multipart upload nobody completed (S3) or a `.tmp-*` copy a killed process left (local)."""
    if isinstance(store, LocalStore):
        tmp = store.root / "builds" / "t1" / ".tmp-killed"
        tmp.parent.mkdir(parents=True)
        tmp.write_bytes(b"half a file")
        os.utime(tmp, (time.time() - 3 * 86400,) * 2)
        (store.root / "builds" / "t1" / ".tmp-running").write_bytes(b"being written now")
    else:  # as a killed uploader (an Argo artifact upload, an older version) leaves it
        store.client.create_multipart_upload(Bucket=store.bucket, Key="runs/r1/train/adapter/big")
    found, kept = gc.find_garbage(store, min_age_s=gc.MIN_AGE_FLOOR_S)
    assert [g.key for g in found] == ["builds/t1/.tmp-killed" if isinstance(store, LocalStore) else
                                      "runs/r1/train/adapter/big"]
    assert isinstance(store, LocalStore) == any(".tmp-running" in k and "may still be running" in k for k in kept)
    gc.collect(store, found)
    assert [u.key for u in store.unfinished()] == (["builds/t1/.tmp-running"] if isinstance(store, LocalStore) else [])


def test_gc_command_is_a_dry_run_unless_applied(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QSLM_STORE", str(tmp_path / "store"))
    store = LocalStore(tmp_path / "store")
    key = keys.attempt_prefix("t2", keys.new_attempt(OLD)) + "dataset/train.parquet"
    store.put_bytes(key, b"x")
    assert main(["gc"]) == 0
    out = capsys.readouterr().out
    assert f"would remove: {key}" in out and "dry run: nothing was changed" in out and store.exists(key)
    assert main(["gc", "--apply"]) == 0
    assert f"removed: {key}" in capsys.readouterr().out and not store.exists(key)
    assert not (tmp_path / "store" / "builds").exists()  # empty folders go too


def test_gc_refuses_an_age_at_which_a_publish_may_still_be_running(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QSLM_STORE", str(tmp_path / "store"))
    assert main(["gc", "--apply", "--min-age-hours", "1"]) == 2
    assert "gc: error: --min-age-hours 1 is below 12" in capsys.readouterr().err


def test_a_folder_under_attempts_that_is_no_attempt_id_is_left_alone(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put_bytes("builds/t9/attempts/notanattempt/x", b"x")
    found, kept = gc.find_garbage(store, min_age_s=0)
    assert found == [] and any("not an attempt id" in k for k in kept)


def test_the_synthesis_cache_is_listed_and_cleared_per_writer(store, capsys):
    from jobs.core.store import keys
    from jobs.core.store.cli import main

    for name, n in (("openai:qwen@unpinned", 3), ("engine:tiny@x:nf4-float32", 2)):
        for i in range(n):
            store.put_bytes(keys.synthesis_cache_key(keys.writer_slug(name), f"{i:02d}" + "a" * 62), b"{}")
    store.put_bytes("registry/history.jsonl", b"")
    assert main(["gc"]) == 0
    out = capsys.readouterr().out
    openai_slug = keys.writer_slug("openai:qwen@unpinned")
    assert f"synthesis cache: {openai_slug}: 3 replies" in out and "nothing" not in out.split("\n")[0]
    assert len(store.list("cache/")) == 5  # listing removes nothing
    assert main(["gc", "--clear-cache", "openai:qwen@unpinned"]) == 0  # a dry run: listed, kept
    assert "would remove: cache/synthesis/" + openai_slug in capsys.readouterr().out and len(store.list("cache/")) == 5
    assert main(["gc", "--apply", "--clear-cache", "openai:qwen@unpinned"]) == 0
    assert [k.split("/")[2] for k in store.list("cache/")] == [keys.writer_slug("engine:tiny@x:nf4-float32")] * 2
    assert store.list("registry/") == ["registry/history.jsonl"]
    assert main(["gc", "--clear-cache", "openai:other@x"]) == 2
    assert "no synthesis cache for writer 'openai:other@x'" in capsys.readouterr().err
    assert main(["gc", "--apply", "--clear-cache", "all"]) == 0 and store.list("cache/") == []
    assert main(["gc", "--min-age-hours", "nan"]) == 2 and "not a number of hours" in capsys.readouterr().err
