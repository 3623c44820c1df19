"""The dataset folder's writer: what it leaves is readable by another user, as Argo's wait container (the
executor's uid, in the pod's fsGroup) must read it to upload it (docs/cluster.md, blocker 1 of issue 23)."""

from __future__ import annotations

import stat
from pathlib import Path

from jobs.core.store.dataset_folder import write_folder


def _fill(tmp: Path) -> list[str]:
    (tmp / "train.parquet").write_bytes(b"rows")
    (tmp / "stats.json").write_text("{}")
    return ["train.parquet", "stats.json"]


def test_a_new_folder_can_be_listed_and_read_by_others(tmp_path):
    out = tmp_path / "out" / "dataset"
    write_folder(out, _fill)
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode & 0o055 == 0o055, oct(mode)  # group (the fsGroup) and others may list and enter it
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o044 == 0o044, f


def test_files_moved_into_an_existing_mount_point_stay_readable(tmp_path):
    out = tmp_path / "dataset"
    out.mkdir()
    write_folder(out, _fill)
    assert sorted(p.name for p in out.iterdir()) == ["stats.json", "train.parquet"]
    assert all(stat.S_IMODE(f.stat().st_mode) & 0o044 == 0o044 for f in out.iterdir())
