"""Publish and registry against both store backends, with stage folders made by hand."""

import json

import pytest

from jobs.core.store import keys
from jobs.core.store.publish import PublishError, commit, publish
from jobs.core.store.registry import RegistryError, artifact_files, current_tag, history, promote, rollback
from tests.core.conftest import DOC, stage_folders


def test_manifest_ties_everything_together(store, spec, tmp_path):
    m = publish(spec, "t1", *stage_folders(tmp_path), git={"commit": "abc123", "dirty": False}, store=store)
    stored = json.loads(store.get_bytes(keys.manifest_key("t1")))
    assert stored == json.loads(json.dumps(m)) and m["status"] == "passed" and m["git"] == {"commit": "abc123", "dirty": False}
    assert m["spec"]["name"] == "t1" and m["dataset_sha256"] == "d" * 64
    assert [s["path"] for s in m["sources"]] == ["docs/a.md"] and len(m["sources"][0]["sha256"]) == 64
    assert store.get_bytes(keys.source_key(m["sources"][0]["sha256"])) == DOC.encode()
    paths = {k: [f["path"] for f in v] for k, v in m["artifacts"].items()}
    assert "adapter_model.safetensors" in paths["adapter"] and not any("checkpoints" in p for p in paths["adapter"])
    assert m["metrics"]["concept_recall"] == 0.5
    assert set(m["timings_s"]) == {"curate", "train", "eval", "publish"}
    assert "torch" in m["versions"]["train"]


def test_files_live_under_the_attempt_the_manifest_names(store, spec, tmp_path):
    m = publish(spec, "t1", *stage_folders(tmp_path), store=store)
    assert m["schema"] == 2 and keys.attempt_started(m["attempt"]) is not None
    listed = {key for name in keys.ARTIFACTS for key, _ in artifact_files(m, "t1", name)}
    assert all(k.startswith(keys.attempt_prefix("t1", m["attempt"])) for k in listed)
    assert set(store.list("builds/t1/")) == listed | {keys.manifest_key("t1")}
    for key, rec in ((k, r) for name in keys.ARTIFACTS for k, r in artifact_files(m, "t1", name)):
        assert store.sha256(key) == rec["sha256"]


def test_only_the_documents_curate_read_are_stored(store, tmp_path, spec):
    """A `.env`, a `.git/config` and a file curate ignored sit in the source folder: none of them reaches the
    store or the manifest, so a secret that lands in data/raw is never published."""
    docs = tmp_path / "docs"
    (docs / ".git").mkdir()
    (docs / ".env").write_text("AWS_SECRET_ACCESS_KEY=hunter2-secret\n")
    (docs / ".git" / "config").write_text("[remote]\n  url = https://user:hunter2-token@example.com/r.git\n")
    (docs / "notes.bin").write_bytes(b"\x00hunter2-binary")
    m = publish(spec, "t1", *stage_folders(tmp_path), store=store)
    assert [s["path"] for s in m["sources"]] == ["docs/a.md"]
    assert store.list("sources/") == [keys.source_key(m["sources"][0]["sha256"])]
    assert not [k for k in store.list("") if b"hunter2" in store.get_bytes(k)]


def test_a_document_changed_since_curate_is_refused(store, spec, tmp_path):
    folders = stage_folders(tmp_path)
    (tmp_path / "docs" / "a.md").write_text(DOC + "edited after curate\n")
    with pytest.raises(PublishError, match="docs/a.md: the document curate read is missing or has changed"):
        publish(spec, "t1", *folders, store=store)
    assert not store.exists(keys.manifest_key("t1"))


def test_a_complete_tag_is_immutable(store, spec, tmp_path):
    publish(spec, "t1", *stage_folders(tmp_path / "one"), git={"commit": "a", "dirty": False}, store=store)
    before = {k: store.get_bytes(k) for k in store.list("builds/t1/")}
    with pytest.raises(PublishError, match="immutable"):
        publish(spec, "t1", *stage_folders(tmp_path / "two", recall=0.9), git={"commit": "b", "dirty": False},
                store=store)
    assert {k: store.get_bytes(k) for k in store.list("builds/t1/")} == before


@pytest.mark.parametrize("tag", ["t1\n", "t1/x", "../t1", ""])
def test_a_tag_with_a_trailing_newline_or_a_slash_is_refused(store, spec, tmp_path, tag):
    """`re.match` with `$` accepted "t1\\n": a second, different "t1" beside the immutable one."""
    with pytest.raises(PublishError, match="not a valid build tag"):
        publish(spec, tag, *stage_folders(tmp_path), store=store)
    assert store.list("") == []


def test_incomplete_stage_output_writes_no_manifest(store, spec, tmp_path):
    d, a, r = stage_folders(tmp_path)
    (a / "adapter_model.safetensors").unlink()
    with pytest.raises(PublishError, match="adapter_model.safetensors is missing"):
        publish(spec, "t1", d, a, r, git={"commit": "a", "dirty": False}, store=store)
    assert not store.exists(keys.manifest_key("t1"))


def test_a_retried_commit_that_landed_is_a_commit_and_another_run_is_a_loss(store):
    """When the answer to the manifest's PUT is lost and the PUT is tried again, the store already holds this
    run's own manifest: that is success. Another run's manifest there is a lost race."""
    commit(store, "t1", b'{"attempt": "mine"}', "mine")
    commit(store, "t1", b'{"attempt": "mine"}', "mine")
    with pytest.raises(PublishError, match="completed by another run.*attempt theirs"):
        commit(store, "t1", b'{"attempt": "theirs"}', "theirs")
    assert store.get_bytes(keys.manifest_key("t1")) == b'{"attempt": "mine"}'


def test_promote_rollback_and_failed_gate(store, spec, tmp_path):
    for tag, passed in (("t1", True), ("t2", True), ("t3", False)):
        publish(spec, tag, *stage_folders(tmp_path / tag, passed=passed), git={"commit": "a", "dirty": False},
                store=store)
    assert json.loads(store.get_bytes(keys.manifest_key("t3")))["status"] == "failed-gate"
    with pytest.raises(RegistryError, match="only a build that passed"):
        promote(store, "t3")
    with pytest.raises(RegistryError, match="not complete"):
        promote(store, "t9")
    with pytest.raises(RegistryError, match="nothing to roll back"):
        rollback(store)
    promote(store, "t1")
    promote(store, "t2")
    assert current_tag(store) == "t2"
    assert rollback(store)["tag"] == "t1" and current_tag(store) == "t1"
    assert [e["action"] for e in history(store)] == ["promote", "promote", "rollback"]
    with pytest.raises(RegistryError, match="nothing to roll back"):
        rollback(store)


def test_fetch_artifact_checks_every_file_against_the_manifest(store, spec, tmp_path):
    from jobs.core.store.registry import IntegrityError, fetch_artifact

    m = publish(spec, "t1", *stage_folders(tmp_path), store=store)
    manifest = fetch_artifact(store, "t1", "report", tmp_path / "got")
    assert {r["path"] for r in manifest["artifacts"]["report"]} == \
        {p.relative_to(tmp_path / "got").as_posix() for p in (tmp_path / "got").rglob("*") if p.is_file()}
    store.put_bytes(keys.artifact_prefix("t1", "report", m["attempt"]) + "metrics.json", b'{"headline": {}}')
    with pytest.raises(IntegrityError, match="metrics.json .sha256 differs"):
        fetch_artifact(store, "t1", "report", tmp_path / "again")
    assert not (tmp_path / "again").exists() and not list(tmp_path.glob(".again*"))
