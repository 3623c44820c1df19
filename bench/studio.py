"""python -m bench.studio --from-store STORE [--builds 50]: how fast the builds page answers.

Copies the complete build `smoke` of STORE under N tags into a temporary local store (the manifest's tag changed,
every file as published), starts the studio on it as `make studio` does, and times GET / : the first request
(every build's report/metrics.json read and re-hashed for the intervals) and the next ones (manifests only).
Prints a table. The target (issue 30): under 1 s with 50 builds on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from jobs.core.repo import REPO_ROOT


def make_store(source: Path, dest: Path, n: int) -> None:
    template = source / "builds" / "smoke"
    for i in range(n):
        tag = f"b{i:02d}"
        shutil.copytree(template, dest / "builds" / tag)
        manifest = json.loads((template / "manifest.json").read_text())
        manifest.update(tag=tag, created_at=f"2026-12-{1 + i % 28:02d}T00:{i % 60:02d}:00+00:00")
        (dest / "builds" / tag / "manifest.json").write_text(json.dumps(manifest))


def fetch(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        r.read()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("--from-store", type=Path, required=True, help="a local store holding a complete build `smoke`")
    p.add_argument("--builds", type=int, default=50)
    p.add_argument("--port", type=int, default=8391)
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        make_store(args.from_store, store, args.builds)
        env = {**os.environ, "QSLM_STORE": str(store)}
        proc = subprocess.Popen([sys.executable, "-m", "jobs.studio", "--port", str(args.port), "--work",
                                 str(Path(tmp) / "work")], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{args.port}/"
            for _ in range(100):
                try:
                    fetch(url + "running")
                    break
                except OSError:
                    time.sleep(0.2)
            first = fetch(url)
            warm = [fetch(url) for _ in range(args.repeat)]
            sort = [fetch(url + "?sort=concept_recall&order=asc&q=b1") for _ in range(args.repeat)]
        finally:
            proc.terminate()
            proc.wait()
    print(f"builds page, {args.builds} builds in a local store, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"{'request':<38} {'seconds':>8}")
    print(f"{'GET / first (reads 50 metrics.json)':<38} {first:>8.3f}")
    print(f"{'GET / next, median of ' + str(args.repeat):<38} {statistics.median(warm):>8.3f}")
    print(f"{'GET / sorted + filtered, median':<38} {statistics.median(sort):>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
