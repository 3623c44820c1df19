"""The S3 endpoint stopped, frozen, or dropping answers under a running publish, through a proxy on loopback.
Not restored: publish prints a line per failed try, then one `publish: error:` naming the endpoint and the fix,
exits 2, commits nothing, and the same command completes once the endpoint is back. Restored within the tries:
publish completes. Either way every committed build re-hashes clean."""

import threading

import pytest

from jobs.core.store import keys
from jobs.core.store.registry import verify_build
from jobs.core.store.backends import open_store
from tests.conftest import wait_for
from tests.faults.harness import FIGURES, fault_env, finish, make_build, start_publish
from tests.faults.proxy import Proxy

TIMEOUT_S, ATTEMPTS = 2, 3  # per try; tries per request (pauses of 1 and 2 s between them)


@pytest.fixture
def through_proxy(s3_env, s3_endpoint, tmp_path, committed):
    """(proxy, env for a publish that reaches the bucket through it, the store seen directly)."""
    proxy = Proxy(int(s3_endpoint.rsplit(":", 1)[1]))
    store = open_store(s3_env)  # direct: the test watches the bucket while the publish's endpoint misbehaves
    committed(store)
    env = fault_env(s3_env, S3_ENDPOINT_URL=proxy.url, QSLM_S3_TIMEOUT_S=TIMEOUT_S, QSLM_S3_ATTEMPTS=ATTEMPTS)
    yield proxy, env, store
    proxy.close()


class Watched:
    """A publish whose stderr lines the test can see while it runs."""

    def __init__(self, proc):
        self.proc, self.lines = proc, []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(proc.stderr.readline, "")))
        self._reader.start()

    def finish(self):
        out = self.proc.stdout.read()
        self.proc.wait(timeout=300)
        self._reader.join()
        return self.proc.returncode, out, "".join(self.lines)


def _uploading(store, tag):
    return lambda: any(keys.attempt_of_key(k) for k in store.list(keys.build_prefix(tag)))


@pytest.mark.parametrize("fault", ["stop", "freeze"])
def test_an_endpoint_that_stays_down_is_one_clear_error_and_a_rerun_completes(through_proxy, tmp_path, fault):
    proxy, env, store = through_proxy
    spec, folders = make_build(tmp_path / "b", seed=3, adapter_mib=24)
    publish = start_publish(spec, "t1", folders, tmp_path / "go", env)
    (tmp_path / "go").touch()
    assert wait_for(_uploading(store, "t1")), "the publish never started uploading"
    proxy.set(fault)  # mid-upload: some files are in its attempt, the manifest is not
    FIGURES[f"S3 endpoint {'stopped' if fault == 'stop' else 'frozen'} under a publish"] += 1
    rc, _, err = finish(publish)
    tries = [line for line in err.splitlines() if line.startswith("store: ")]
    last = err.strip().splitlines()[-1]
    assert rc == 2 and "Traceback" not in err and len(tries) == ATTEMPTS - 1, err
    assert last.startswith("publish: error: ") and proxy.url in last and "S3_ENDPOINT_URL" in last
    assert "was not committed; run publish again" in last
    assert not store.exists(keys.manifest_key("t1"))
    proxy.set("pass")
    rc, _, err = finish(start_publish(spec, "t1", folders, tmp_path / "go", env))
    assert rc == 0, err
    assert verify_build(store, "t1").damaged == []


@pytest.mark.parametrize("fault", ["stop", "drop"])
def test_an_endpoint_restored_within_the_tries_lets_the_publish_complete(through_proxy, tmp_path, fault):
    proxy, env, store = through_proxy
    spec, folders = make_build(tmp_path / "b", seed=4, adapter_mib=24)
    publish = Watched(start_publish(spec, "t1", folders, tmp_path / "go", env))
    (tmp_path / "go").touch()
    assert wait_for(_uploading(store, "t1")), "the publish never started uploading"
    proxy.set(fault)  # "drop": requests reach the server, the answers are lost
    assert wait_for(lambda: any("attempt 1 of" in line for line in publish.lines)), publish.lines
    proxy.set("pass")
    FIGURES[f"S3 endpoint {'stopped' if fault == 'stop' else 'dropping answers'} and restored under a publish"] += 1
    rc, out, err = publish.finish()
    assert rc == 0 and "Traceback" not in err, err
    assert out.startswith("published t1") and "retrying in 1 s" in err
    assert verify_build(store, "t1").damaged == []
