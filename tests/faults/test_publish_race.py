"""Two real publish processes race for one tag, with large and different artifacts, on both backends: exactly one
commits, the loser says so, and every file the committed manifest lists re-hashes to the winner's bytes."""

import hashlib

import pytest

from jobs.core.store import keys
from jobs.core.store.registry import read_manifest
from jobs.core.store.backends import open_store
from tests.faults.harness import FIGURES, fault_env, finish, make_build, start_publish

RACES = 4  # per backend


@pytest.fixture(params=["local", "s3"])
def store_url(request, tmp_path):
    return str(tmp_path / "store") if request.param == "local" else request.getfixturevalue("s3_env")


def test_two_publishes_of_one_tag_never_mix_their_files(store_url, tmp_path, committed):
    store = open_store(store_url)
    committed(store)
    builds = [make_build(tmp_path / f"run{i}", seed=i) for i in (1, 2)]
    sha = [{f.name: hashlib.sha256(f.read_bytes()).hexdigest() for d in folders for f in d.iterdir()}
           for _, folders in builds]
    for race in range(RACES):
        tag, go = f"race{race}", tmp_path / f"go{race}"
        procs = [start_publish(spec, tag, folders, go, fault_env(store_url)) for spec, folders in builds]
        go.touch()  # both have imported everything: they start at once
        results = [finish(p) for p in procs]
        FIGURES["publish races"] += 1
        codes = sorted(rc for rc, _, _ in results)
        assert codes == [0, 2], results
        loser_err = next(err for rc, _, err in results if rc == 2)
        assert "Traceback" not in loser_err and loser_err.startswith("publish: error: ")
        lost_at_commit = "completed by another run" in loser_err
        assert lost_at_commit or "already complete" in loser_err
        FIGURES["races lost at the commit (both uploaded everything)"] += lost_at_commit
        m = read_manifest(store, tag)
        winner = [i for i, s in enumerate(sha) if s["adapter_model.safetensors"] ==
                  next(r["sha256"] for r in m["artifacts"]["adapter"] if r["path"] == "adapter_model.safetensors")]
        assert len(winner) == 1
        for artifact in keys.ARTIFACTS:  # every listed file is the winner's, none the loser's
            assert all(sha[winner[0]][r["path"]] == r["sha256"] for r in m["artifacts"][artifact])
