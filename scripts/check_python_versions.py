"""Does every package pyproject.toml pins exist for each supported Python? A table, from the package index.

    python scripts/check_python_versions.py [--python 3.11 3.12 3.13] [--extras train,gguf]

For each `name==version` pin (core and every extra) and each Python, pip resolves that one release for that
interpreter on Linux x86_64 (manylinux) without installing it (`pip install --dry-run --only-binary :all:
--python-version X`): "wheel" when a binary wheel fits, "sdist" when only a source distribution does (pip would
build it: llama-cpp-python always), "MISSING" when neither does. Exit status 1 when any pin is MISSING.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# pip takes --platform tags literally (no older manylinux implied): name every one a current x86_64 Linux accepts
PLATFORMS = ["linux_x86_64", "manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64",
             *(f"manylinux_2_{minor}_x86_64" for minor in range(5, 29))]


def pins(extras: list[str] | None) -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    found = {}
    for group, deps in groups.items():
        if extras and group not in extras and group != "core":
            continue
        for dep in deps:
            m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^;\s]+)", dep)
            if m:
                found[m.group(1).lower()] = m.group(3)
    return dict(sorted(found.items()))


def available(name: str, version: str, python: str, binary: bool) -> bool:
    with tempfile.TemporaryDirectory() as target:
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps", "--ignore-installed",
               "--target", target, "--python-version", python, "--implementation", "cp", f"{name}=={version}"]
        cmd += [arg for tag in PLATFORMS for arg in ("--platform", tag)]
        cmd += ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
        return subprocess.run(cmd, capture_output=True, text=True).returncode == 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python", nargs="+", default=["3.11", "3.12", "3.13"])
    p.add_argument("--extras", help="comma-separated extras to check (default: all)")
    args = p.parse_args()
    table = pins(args.extras.split(",") if args.extras else None)
    print(f"| package | version | {' | '.join('Python ' + v for v in args.python)} |")
    print("|---|---|" + "---|" * len(args.python))
    def row(item: tuple[str, str]) -> list[str]:
        name, version = item
        return ["wheel" if available(name, version, python, True) else
                "sdist" if available(name, version, python, False) else "MISSING" for python in args.python]

    with ThreadPoolExecutor(8) as pool:  # pip spends its time waiting on the index
        rows = list(pool.map(row, table.items()))
    for (name, version), cells in zip(table.items(), rows):
        print(f"| {name} | {version} | {' | '.join(cells)} |")
    missing = sum(cells.count("MISSING") for cells in rows)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
