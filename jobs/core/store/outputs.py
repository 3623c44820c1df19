"""Output folders other users can read. On a cluster a step's outputs are uploaded by Argo's wait container, which
runs as another user (the executor's uid, in the pod's fsGroup): a folder or file only the step's own user can
read is skipped or fails the upload (docs/cluster.md). tempfile.mkdtemp makes folders 0700 and safetensors writes
files 0600, whatever the umask; every folder a stage hands over goes through `share` before it is complete.

    from jobs.core.store.outputs import share
    share(out_dir)          # folders 0755 at least, files 0644 at least; nothing else changes
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FOLDER = 0o755  # list and enter: the owner, the group (the pod's fsGroup) and others
FILE = 0o644  # read


def share(root: str | Path) -> None:
    """Give `root` and everything under it the read (and, for folders, list) bits for group and others; bits
    already set stay. Symbolic links are left alone (Argo does not follow them either)."""
    for top, dirs, files in os.walk(root):
        for path, least in [(top, FOLDER)] + [(os.path.join(top, f), FILE) for f in files]:
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & least != least:
                os.chmod(path, stat.S_IMODE(st.st_mode) | least)
