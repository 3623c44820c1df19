"""What each extra would install into a fresh venv, and whether it pulls in what belongs to another image.

    python scripts/check_extras.py [EXTRA ...]        # default: every extra of pyproject.toml

For each extra a new venv is made and pip resolves `.[EXTRA]` in it without installing (`pip install --dry-run
--report`): the packages listed are exactly what that image or user would get. Checked: no image extra
(curate, train, eval, serve, workflows) pulls MLflow or llama.cpp's binding, the curate and workflows images and
the tracking and gguf extras pull no torch, and only the tracking extra pulls MLflow. Exit status 1 on a breach.
The full dependency audit (every package justified) is the house issue's; this guards the heavy optional pieces.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "mlflow", "mlflow-skinny", "llama-cpp-python"}
ALLOWED_HEAVY = {  # extra -> the heavy packages it may pull; any other heavy package is a breach
    "curate": set(), "workflows": set(), "tracking": {"mlflow", "mlflow-skinny"}, "gguf": {"llama-cpp-python"},
    "train": {"torch"}, "eval": {"torch"}, "serve": {"torch"}, "curate-embed": {"torch"}, "dev": set(),
}


def resolve(extra: str) -> set[str]:
    """The distributions pip would install for `.[extra]` into a fresh venv (names normalised)."""
    with tempfile.TemporaryDirectory(prefix=f"qslm-extra-{extra}-") as tmp:
        subprocess.run([sys.executable, "-m", "venv", f"{tmp}/venv"], check=True)
        report = Path(tmp) / "report.json"
        subprocess.run([f"{tmp}/venv/bin/python", "-m", "pip", "install", "--quiet", "--dry-run", "--report",
                        str(report), f"{REPO}[{extra}]"], check=True, capture_output=True, text=True)
        items = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"].lower().replace("_", "-") for i in items} - {"quantum-slm"}


def main(argv: list[str]) -> int:
    extras = argv or list(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    breaches = 0
    print("| extra | packages | heavy ones | verdict |\n|---|---|---|---|")
    for extra in extras:
        try:
            names = resolve(extra)
        except subprocess.CalledProcessError as exc:
            print(f"| {extra} | - | - | pip could not resolve it: {(exc.stderr or '').strip()[-300:]} |")
            breaches += 1
            continue
        heavy = names & HEAVY
        bad = heavy - ALLOWED_HEAVY.get(extra, set())
        breaches += bool(bad)
        print(f"| {extra} | {len(names)} | {', '.join(sorted(heavy)) or '-'} | "
              f"{'pulls ' + ', '.join(sorted(bad)) + ', which belongs elsewhere' if bad else 'ok'} |", flush=True)
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
