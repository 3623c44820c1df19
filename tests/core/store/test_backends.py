import os
import socket
import subprocess
import sys
import time

import pytest

from jobs.core.store.backends import KeyExists, StoreError, download_folder, open_store, upload_folder
from tests.conftest import REPO


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


# ---------------------------------------------------------------- S3 endpoint faults: bounded, one line per try

@pytest.fixture
def proxied(s3_env, s3_endpoint, monkeypatch):
    """The test bucket reached through a loopback proxy the test can stop or freeze; 2 tries of 1 s each."""
    from tests.faults.proxy import Proxy

    proxy = Proxy(int(s3_endpoint.rsplit(":", 1)[1]))
    monkeypatch.setenv("S3_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("QSLM_S3_TIMEOUT_S", "1")
    monkeypatch.setenv("QSLM_S3_ATTEMPTS", "2")
    yield proxy
    proxy.close()


def test_a_stopped_endpoint_is_one_clear_error_after_a_line_per_try(proxied, capsys):
    store = open_store()
    store.put_bytes("builds/t/a", b"a")
    proxied.set("stop")
    with pytest.raises(StoreError) as err:
        store.put_bytes("builds/t/b", b"b")
    msg = str(err.value)
    assert proxied.url in msg and "failed 2 times" in msg and "S3_ENDPOINT_URL" in msg and "\n" not in msg
    tries = [line for line in capsys.readouterr().err.splitlines() if line.startswith("store: PUT builds/t/b")]
    assert len(tries) == 1 and "attempt 1 of 2 failed, retrying in 1 s" in tries[0]


def test_a_frozen_endpoint_times_out_instead_of_hanging(proxied):
    store = open_store()
    proxied.set("freeze")
    started = time.monotonic()
    with pytest.raises(StoreError, match="ReadTimeoutError"):
        store.exists("builds/t/manifest.json")
    # 2 tries x 1 s read timeout + 1 s pause; the bound is loose (a loaded 2-core machine), the old code hung
    # for 5 tries x 60 s
    assert time.monotonic() - started < 60


def test_a_dropped_connection_is_retried_and_succeeds_once_restored(proxied):
    store = open_store()
    proxied.set("drop")
    with pytest.raises(StoreError, match="failed 2 times"):
        store.get_bytes("builds/t/a")
    proxied.set("pass")
    store.put_bytes("builds/t/a", b"a")
    assert store.get_bytes("builds/t/a") == b"a"


def test_a_missing_bucket_is_named_at_once_without_retries(s3_env, monkeypatch, capsys):
    monkeypatch.setenv("QSLM_STORE", "s3://no-such-bucket-here")
    store = open_store()
    for call in (store.check, lambda: store.list("builds/"), lambda: store.put_bytes("builds/t/a", b"a")):
        with pytest.raises(StoreError, match="bucket 'no-such-bucket-here' does not exist at the S3 endpoint http"):
            call()
    assert "attempt" not in capsys.readouterr().err


def test_store_commands_print_one_error_line_not_a_traceback(s3_env, tmp_path):
    """What an operator sees when the endpoint is down: `<stage>: error: ...` naming it, exit 2."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens here once closed
    env = dict(os.environ, S3_ENDPOINT_URL=dead, QSLM_S3_ATTEMPTS="1", QSLM_S3_TIMEOUT_S="1")
    for cmd in (["jobs.core.store.cli", "list"], ["jobs.core.store.cli", "verify", "v1"], ["jobs.core.store.cli", "gc"]):
        r = subprocess.run([sys.executable, "-m", *cmd], cwd=REPO, env=env, capture_output=True, text=True)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.splitlines()[-1].startswith(f"{cmd[1]}: error: ") and dead in r.stderr.splitlines()[-1]


def test_an_unwritable_local_store_fails_before_any_work(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match="is a file, so the store folder cannot exist"):
        open_store(str(tmp_path / "file" / "store")).check()
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    if not os.access(tmp_path / "ro", os.W_OK):  # root writes anywhere
        with pytest.raises(StoreError, match="cannot create the store folder"):
            open_store(str(tmp_path / "ro" / "store")).check()


@pytest.mark.parametrize("url, expected", [
    ("{file}", "is a file, not a folder"),
    ("{file}/store", "is a file, so the store folder cannot exist"),
    ("http://minio:9000/bucket", "only s3:// URLs are stores"),
    ("file:///tmp/store", "only s3:// URLs are stores"),
    ("s3://", "is not an S3 bucket name"),
    ("s3://Upper_Case", "is not an S3 bucket name"),
    ("s3://bucket/../other", "may not hold '.' or '..' parts"),
    ("store\0x", "is not a usable folder or URL"),
])
def test_a_store_that_is_not_a_folder_or_an_s3_url_is_refused(tmp_path, url, expected):
    from jobs.core.store.backends import StoreError, open_store

    (tmp_path / "f").write_text("not a folder")
    with pytest.raises(StoreError, match=expected):
        open_store(url.format(file=tmp_path / "f"))


def test_make_list_on_a_file_store_fails_instead_of_listing_nothing(tmp_path):
    import subprocess
    import sys

    (tmp_path / "f").write_text("x")
    result = subprocess.run([sys.executable, "-m", "jobs.core.store.cli", "list"], capture_output=True, text=True,
                            env={**__import__("os").environ, "QSLM_STORE": str(tmp_path / "f")}, timeout=120)
    assert result.returncode == 2 and "list: error: QSLM_STORE=" in result.stderr and "is a file" in result.stderr
    assert "no builds" not in result.stdout
