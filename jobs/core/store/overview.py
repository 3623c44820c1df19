"""`make show` and `make report`: a build in a few lines, and its report on this machine.

    python -m jobs.core.store.cli show v2 [--raw]     # the summary (--raw: the manifest as stored), files re-hashed
    python -m jobs.core.store.cli report v2           # report.html fetched (checked) and its path printed, opened
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from jobs.core.store import keys
from jobs.core.store.registry import fetch_artifact, read_manifest
from jobs.core.spec.metrics import HEADLINE
from jobs.core.repo import REPO_ROOT

REPORTS_DIR = REPO_ROOT / ".work" / "reports"


def _num(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def summary(store, tag: str) -> str:
    m = read_manifest(store, tag)
    spec, git, suite = m.get("spec") or {}, m.get("git") or {}, m.get("suite") or {}
    metrics = m.get("metrics") or {}
    docs = m.get("sources") or []
    lines = [f"build {tag}: {m.get('status')}  created {str(m.get('created_at'))[:19]}  commit "
             f"{(git.get('commit') or 'unknown')[:8]}{'+' if git.get('dirty') else ''}",
             f"  {spec.get('description', '')}".rstrip(),
             f"  base model  {m.get('base_model')}",
             f"  suite       {suite.get('name') or '?'} ({suite.get('questions') or '?'} questions, sha256 "
             f"{(suite.get('sha256') or '?')[:12]})   compared with: {m.get('previous') or 'no previous build'}",
             f"  documents   {len(docs)} file(s), {sum(d.get('bytes', 0) for d in docs) / 1e6:.2f} MB; dataset sha256 "
             f"{(m.get('dataset_sha256') or '?')[:16]}",
             f"  {'headline':<18}{'adapter':>9}{'base':>9}{'delta':>9}"]
    for name in HEADLINE:
        lines.append(f"  {name:<18}" + "".join(f"{_num(metrics.get(p + name)):>9}" for p in ("", "base_", "delta_")))
    gate = m.get("gate") or {}
    failed = [c.get("message", "") for c in gate.get("checks", []) if not c.get("passed")]
    lines.append(f"  gate        {'passed' if gate.get('passed') else 'FAILED'}"
                 + (f": {'; '.join(failed)}" if failed else f" ({len(gate.get('checks', []))} checks)"))
    timings = m.get("timings_s") or {}
    lines.append("  seconds     " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()
                                             if isinstance(v, (int, float))))
    lines.append(f"  report      make report VERSION={tag}    (the manifest as stored: make show VERSION={tag} RAW=1)")
    return "\n".join(lines)


def has_browser() -> bool:
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def report(store, tag: str, open_it: bool = True) -> Path:
    """Fetch the build's report folder (every file checked against the manifest) into .work/reports/<tag>/ and
    return report.html's path; open it in a browser where one can show it."""
    dest = REPORTS_DIR / tag
    shutil.rmtree(dest, ignore_errors=True)
    fetch_artifact(store, tag, "report", dest)
    path = dest / "report.html"
    if open_it and has_browser():
        import webbrowser

        webbrowser.open(path.as_uri())
    return path


def stored_at(store, tag: str) -> str:
    m = read_manifest(store, tag)
    return f"{store.url}/{keys.artifact_prefix(tag, 'report', m.get('attempt'))}report.html"
