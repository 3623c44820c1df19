"""Every reader finds a build's files through its manifest and re-hashes them: show, verify, promote, compare."""

import json

import pytest

from jobs.core.store import keys
from jobs.core.store.cli import main
from jobs.core.store.publish import publish
from jobs.core.store.registry import (IntegrityError, artifact_files, previous_build, promote, read_artifact_file,
    read_manifest, verify_build)
from tests.core.conftest import stage_folders


@pytest.fixture
def built(store, spec, tmp_path):
    """Two committed builds, t1 and t2, in a store of each kind."""
    for tag in ("t1", "t2"):
        publish(spec, tag, *stage_folders(tmp_path / tag), store=store)
    return store


def _adapter_key(store, tag):
    return artifact_files(read_manifest(store, tag), tag, "adapter")[1][0]  # adapter_model.safetensors


def test_verify_re_hashes_every_file_and_source(built):
    result = verify_build(built, "t1")
    m = read_manifest(built, "t1")
    assert result.damaged == [] and result.files == sum(len(v) for v in m["artifacts"].values()) + len(m["sources"])
    assert result.bytes == sum(r["bytes"] for v in m["artifacts"].values() for r in v) + sum(
        s["bytes"] for s in m["sources"])


def test_a_tampered_or_missing_file_is_found_and_named(built):
    key = _adapter_key(built, "t1")
    built.put_bytes(key, b"other weights")
    built.delete(keys.source_key(read_manifest(built, "t1")["sources"][0]["sha256"]))
    damaged = verify_build(built, "t1").damaged
    assert damaged == [f"{key} (sha256 differs from the manifest)",
                       f"{keys.source_key(read_manifest(built, 't1')['sources'][0]['sha256'])} (missing)"]


def test_promote_refuses_a_damaged_build_and_changes_nothing(built):
    built.put_bytes(_adapter_key(built, "t2"), b"other weights")
    with pytest.raises(IntegrityError, match="adapter_model.safetensors .sha256 differs.*make verify VERSION=t2"):
        promote(built, "t2")
    assert not built.exists(keys.CURRENT_KEY)
    promote(built, "t1")


def test_show_and_verify_commands(built, capsys):
    assert main(["verify", "t1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("verified t1: ") and "match the sha256 in its manifest" in out
    assert main(["show", "t1", "--raw"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[:out.rindex("}") + 1])["tag"] == "t1" and "verified t1" in out
    assert main(["show", "t1"]) == 0  # the summary
    out = capsys.readouterr().out
    assert out.startswith("build t1: passed") and "concept_recall" in out and "RAW=1" in out and "verified t1" in out
    assert main(["report", "t1"]) == 0
    out = capsys.readouterr().out
    assert "report of t1: " in out and out.split("report of t1: ")[1].split("\n")[0].endswith("t1/report.html")
    built.put_bytes(_adapter_key(built, "t1"), b"other weights")
    assert main(["verify", "t1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("verify: error: build 't1'") and "1 of " in err and "adapter_model.safetensors" in err
    assert main(["show", "t1"]) == 2


def test_read_artifact_file_checks_the_hash(built):
    assert json.loads(read_artifact_file(built, "t1", "report", "metrics.json"))["headline"]
    m = read_manifest(built, "t1")
    built.put_bytes(keys.artifact_prefix("t1", "report", m["attempt"]) + "metrics.json", b"{}")
    with pytest.raises(IntegrityError, match=r"does not match its manifest \(report/metrics.json\)"):
        read_artifact_file(built, "t1", "report", "metrics.json")


def test_a_manifest_of_schema_1_is_read_from_the_old_layout(store):
    """Builds published before attempts existed keep working: their files are under builds/<tag>/<artifact>/."""
    listed = {}
    for artifact in keys.ARTIFACTS:
        store.put_bytes(keys.artifact_prefix("old", artifact) + "f.txt", artifact.encode())
        listed[artifact] = [{"path": "f.txt", "bytes": len(artifact), "sha256": __import__("hashlib").sha256(
            artifact.encode()).hexdigest()}]
    store.put_bytes(keys.manifest_key("old"), json.dumps({"schema": 1, "tag": "old", "status": "passed",
                                                          "created_at": "2026-01-01", "artifacts": listed,
                                                          "sources": []}).encode())
    assert verify_build(store, "old").damaged == [] and read_artifact_file(store, "old", "report", "f.txt")


def test_a_damaged_manifest_is_reported_and_never_the_previous_build(built, capsys):
    built.put_bytes(keys.manifest_key("t2"), b"{not json")
    with pytest.raises(IntegrityError, match="is not a JSON manifest"):
        read_manifest(built, "t2")
    assert previous_build(built, "t3") == "t1"
    assert main(["list"]) == 0 and "DAMAGED" in capsys.readouterr().out


def test_commands_refuse_tags_that_are_not_plain_names(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QSLM_STORE", str(tmp_path / "store"))
    for tag in ("t1\n", "../t1", "a/b"):
        assert main(["show", tag]) == 2
        assert "not a valid build tag" in capsys.readouterr().err
