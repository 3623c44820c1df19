"""Print the pinned requirements of core plus the given extras, from pyproject.toml, one per line.

    python images/requirements.py curate > requirements.txt

Each image installs only what its own job needs: the project's core dependencies and that job's extra.
"""

import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent / "pyproject.toml"  # copied beside this script in the image
if not PYPROJECT.exists():
    PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"  # run from the repository


def requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    optional = project["optional-dependencies"]
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"{PYPROJECT}: no extra {', '.join(unknown)} in [project.optional-dependencies] "
                         f"(have: {', '.join(optional)})")
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += [r for r in optional[extra] if r not in reqs]
    return reqs


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1:])))
