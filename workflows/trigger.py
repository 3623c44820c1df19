"""python -m workflows.trigger plan --payload FILE [--specs v1,v2] [--branch main] [--store] [--json FILE]

GitOps: which build tags a git push builds, decided from the push's webhook payload (GitHub or Gitea) by one
function, `plan`. The push workflow's first step runs exactly this command on the pushed commit's changes:
  - a push that adds or changes data/builds/<tag>.yaml builds <tag>;
  - a push that changes documents (data/raw/) or eval suites (data/eval/) builds every spec listed in the chart's
    values (trigger.specs), each tagged <spec>-<commit8>;
  - a push touching neither, a push to another branch, or a deleted branch builds nothing;
  - with --store, a tag already complete in the store (QSLM_STORE) is left out, since a tag is immutable: a second
    delivery of the same push builds nothing new. It also picks the build each new one is compared with.
Prints the tags to build, one per line (why others are left out goes to stderr); --json writes them as the
records the workflow fans out over. Standard library and jobs.core only: it runs inside the curate image.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from jobs.core.repo import REPO_ROOT
from jobs.core.errors import QslmError
from jobs.core.spec.tags import TAG_RULE, is_tag
from workflows.names import IMAGE_TAG, run_name
from workflows.payload import read_payload, repo_path, shape_problems

CHART_VALUES = REPO_ROOT / "charts" / "quantum-slm" / "values.yaml"
SPEC_FILE = re.compile(r"^data/builds/([^/]+)\.yaml$")
DOCUMENTS = ("data/raw/", "data/eval/")  # what the listed specs are built from
NO_COMMIT = "0" * 40  # `after` of a deleted branch, `before` of a new one
GITHUB_MAX_COMMITS = 2048  # GitHub lists at most this many commits in a push payload
# One record per build to start: the push workflow passes each field as a parameter of the same name.
BUILD_FIELDS = ("name", "tag", "spec", "commit", "short", "repo", "previous", "previous_report", "image_tag",
                "image_prefix")


class TriggerError(QslmError):
    pass


@dataclass(frozen=True)
class Push:
    ref: str
    after: str
    repo: str  # clone URL
    present: frozenset[str]  # paths added or changed by the push and still there at `after`
    touched: frozenset[str]  # every path the push added, changed or removed
    complete: bool  # False when the payload lists only some of the pushed commits (Gitea keeps 5 by default)


@dataclass(frozen=True)
class PlannedBuild:
    tag: str
    spec: str
    why: str


def parse_push(payload: dict, source: str = "payload") -> Push:
    """The parts of a GitHub or Gitea push payload the decision needs (both carry the same fields)."""
    if not isinstance(payload, dict):
        raise TriggerError(f"{source}: expected a JSON object (a push event), got {type(payload).__name__}")
    missing = [k for k in ("ref", "after", "commits", "repository") if k not in payload]
    if missing:
        raise TriggerError(f"{source}: not a push event payload (no {', '.join(missing)}); the webhook must send "
                           f"push events (GitHub: X-GitHub-Event push, Gitea: X-Gitea-Event push)")
    problems = shape_problems(payload)
    if problems:
        raise TriggerError(f"{source}: {len(problems)} problem(s) in this push payload:\n"
                           + "\n".join(f"  - {p}" for p in problems))
    commits = payload.get("commits") or []
    # GitHub lists commits oldest first, Gitea newest first: order them by time (a stable sort keeps ties as sent).
    present, touched = set(), set()
    for commit in sorted(commits, key=lambda c: c.get("timestamp") or ""):
        for path in (commit.get("added") or []) + (commit.get("modified") or []):
            path = repo_path(path, "", [])  # normalised: data/eval/../../x is x (checked above: never None)
            present.add(path)
            touched.add(path)
        for path in commit.get("removed") or []:
            path = repo_path(path, "", [])
            present.discard(path)
            touched.add(path)
    total = payload.get("total_commits", len(commits))  # Gitea says how many there were
    complete = len(commits) >= total and len(commits) < GITHUB_MAX_COMMITS
    return Push(ref=payload["ref"], after=payload["after"], repo=(payload["repository"] or {}).get("clone_url", ""),
                present=frozenset(present), touched=frozenset(touched), complete=complete)


def plan(push: Push, specs: list[str], branch: str = "main", exists=lambda tag: False) -> tuple[list[PlannedBuild], list[str]]:
    """The builds this push starts, and why anything else is left out. `exists(tag)`: is the tag complete?"""
    notes: list[str] = []
    if push.ref != f"refs/heads/{branch}":
        return [], [f"{push.ref} is not refs/heads/{branch}: nothing to build"]
    if push.after == NO_COMMIT:
        return [], [f"{push.ref} was deleted: nothing to build"]
    wanted: dict[str, PlannedBuild] = {}
    for path in sorted(push.present):
        m = SPEC_FILE.match(path)
        if not m:
            continue
        if is_tag(m.group(1)):
            wanted.setdefault(m.group(1), PlannedBuild(m.group(1), m.group(1), f"{path} added or changed"))
        else:
            notes.append(f"{path}: {m.group(1)[:80]!r} is not a valid build tag ({TAG_RULE})")
    documents = sorted(p for p in push.touched if p.startswith(DOCUMENTS))
    if documents or not push.complete:
        why = (f"{documents[0]}" + (f" and {len(documents) - 1} more" if len(documents) > 1 else "") + " changed"
               if documents else "the payload lists only some of the pushed commits, so documents may have changed")
        if not push.complete:
            notes.append("the payload lists only some of the pushed commits: spec files changed in the others are "
                         "not seen; build them with `make submit`")
        for spec in specs:
            tag = f"{spec}-{push.after[:8]}"
            wanted.setdefault(tag, PlannedBuild(tag, spec, why))
    builds = []
    for build in wanted.values():
        if exists(build.tag):
            notes.append(f"{build.tag}: already complete in the store; a tag is immutable, so nothing to do")
        else:
            builds.append(build)
    if not wanted:
        notes.append("nothing to build: the push changes no build spec (data/builds/), document (data/raw/) or "
                     "eval suite (data/eval/)")
    return builds, notes


def _chart_trigger() -> dict:
    """The chart's trigger values: the cluster passes them as environment, a checkout reads the file."""
    if CHART_VALUES.is_file():
        return yaml.safe_load(CHART_VALUES.read_text()).get("trigger") or {}
    return {}


def records(push: Push, builds: list[PlannedBuild], store, image_tag: str, image_prefix: str) -> list[dict]:
    """One record per build, with the fields the push workflow gives each Workflow it starts."""
    from jobs.core.store.registry import previous_build, previous_report_key

    short = push.after[:8]
    out = []
    for b in builds:
        previous = (previous_build(store, b.tag) or "") if store else ""
        out.append({"name": run_name(b.tag, short) if not b.tag.endswith(short) else run_name(b.tag, "push"),
                    "tag": b.tag, "spec": b.spec, "commit": push.after, "short": short, "repo": push.repo,
                    "previous": previous,
                    "previous_report": previous_report_key(store, previous),
                    "image_tag": image_tag or IMAGE_TAG, "image_prefix": image_prefix})
    return out


def plan_command(args: argparse.Namespace) -> None:
    """What `plan` prints and writes: the tags on stdout, why on stderr, the records in --json."""
    push = parse_push(read_payload(args.payload, TriggerError), str(args.payload))
    store = None
    if args.store:
        from jobs.core.store import keys
        from jobs.core.store.backends import open_store

        store = open_store()
    builds, notes = plan(push, [s for s in args.specs.split(",") if s], args.branch,
                         exists=(lambda tag: store.exists(keys.manifest_key(tag))) if store else lambda tag: False)
    for note in notes + [f"{b.tag}: {b.why}" for b in builds]:
        print(f"trigger: {note}", file=sys.stderr)
    print("".join(f"{b.tag}\n" for b in builds), end="")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records(push, builds, store, args.image_tag, args.image_prefix)) + "\n")


def main(argv: list[str] | None = None) -> int:
    env, chart = os.environ, _chart_trigger()
    p = argparse.ArgumentParser(prog="python -m workflows.trigger", description=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("plan", help="print the tags a push builds, one per line")
    q.add_argument("--payload", required=True, type=Path, help="the push webhook's JSON body (GitHub or Gitea)")
    q.add_argument("--specs", default=env.get("QSLM_TRIGGER_SPECS", ",".join(chart.get("specs", []))),
                   help="specs built when documents or eval suites change, comma-separated (default: the chart's "
                        "trigger.specs)")
    q.add_argument("--branch", default=env.get("QSLM_TRIGGER_BRANCH", chart.get("branch", "main")))
    q.add_argument("--store", action="store_true", help="leave out tags complete in QSLM_STORE; pick previous builds")
    q.add_argument("--json", type=Path, help="also write the builds as JSON records (the workflow's fan-out)")
    q.add_argument("--image-tag", default="", help=f"the stage images' tag for --json (default: {IMAGE_TAG})")
    q.add_argument("--image-prefix", default="", help="registry prefix of the images for --json")
    try:
        plan_command(p.parse_args(argv))
        return 0
    except QslmError as exc:
        print(f"trigger: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
