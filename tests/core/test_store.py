import pytest

from jobs.core.store import KeyExists, StoreError, download_folder, open_store, upload_folder


def test_put_get_list_exists(store, tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("hello")
    store.put_file("builds/v1/dataset/a.txt", f)
    store.put_bytes("builds/v1/report/m.json", b"{}")
    assert store.exists("builds/v1/dataset/a.txt") and not store.exists("builds/v1/dataset/b.txt")
    assert store.get_bytes("builds/v1/dataset/a.txt") == b"hello"
    assert store.list("builds/v1/") == ["builds/v1/dataset/a.txt", "builds/v1/report/m.json"]
    assert store.list("builds/v1/report/") == ["builds/v1/report/m.json"]
    assert store.list("builds/v2/") == []


def test_create_bytes_refuses_an_existing_key_and_keeps_it(store):
    store.create_bytes("builds/v1/manifest.json", b"first")
    with pytest.raises(KeyExists):
        store.create_bytes("builds/v1/manifest.json", b"second")
    assert store.get_bytes("builds/v1/manifest.json") == b"first"


def test_missing_key_is_a_clear_error(store):
    with pytest.raises(StoreError, match="nope"):
        store.get_bytes("builds/nope/manifest.json")


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/./b"])
def test_keys_cannot_escape_the_store(tmp_path, key):
    with pytest.raises(StoreError):
        open_store(str(tmp_path)).put_bytes(key, b"x")


def test_folder_round_trip(store, tmp_path):
    src = tmp_path / "src"
    (src / "checkpoints").mkdir(parents=True)
    (src / "sub").mkdir()
    (src / "x.bin").write_bytes(b"\x00\x01")
    (src / "sub" / "y.txt").write_text("y")
    (src / "checkpoints" / "state.pt").write_text("skip me")
    keys = upload_folder(store, src, "runs/r1/train/", exclude=("checkpoints",))
    assert keys == ["runs/r1/train/sub/y.txt", "runs/r1/train/x.bin"]
    download_folder(store, "runs/r1/train/", tmp_path / "back")
    assert (tmp_path / "back" / "x.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "back" / "sub" / "y.txt").read_text() == "y"
