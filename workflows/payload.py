"""A push webhook's payload, read within bounds and its shape checked before trigger.py decides anything.

    payload = read_payload(Path("push.json"))          # TriggerError: size, JSON, nesting
    problems = shape_problems(payload)                 # one line per problem; [] when usable

A payload comes from outside (a forge, or anyone who can reach the webhook): its size and nesting are bounded
before and while it is parsed (no RecursionError), every field the decision reads has its type checked (no
AttributeError), and every changed path is normalised and refused when it leaves the repository, so
`data/eval/../../.git/config` counts as `.git/config` and `../x` is an error. Standard library only.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

MAX_BYTES = 25 * 2**20  # GitHub caps a webhook payload at 25 MB
MAX_DEPTH = 32  # a push payload nests about 5 levels
MAX_COMMITS = 4096  # GitHub lists at most 2048 commits; Gitea fewer
MAX_PATHS = 100_000  # changed paths over all commits
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_PROBLEMS = 20
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?\Z")  # SHA-1, or SHA-256 object names


def read_payload(path: Path, error) -> dict:
    """The parsed payload; `error(message)` builds the exception for a file that is too large, not JSON, or nested
    too deep."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read the payload ({exc.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise error(f"{path}: more than {MAX_BYTES // 2**20} MiB, larger than any push payload a forge sends")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise error(f"{path}: nested more than {MAX_DEPTH} levels deep; not a push payload") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read a JSON payload ({str(exc)[:200]})") from None
    if _depth(data) > MAX_DEPTH:
        raise error(f"{path}: nested more than {MAX_DEPTH} levels deep; not a push payload")
    return data


def _depth(value) -> int:
    """Nesting depth without recursion (a payload that parsed may still be deep enough to break recursive code)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def repo_path(path, where: str, problems: list[str]) -> str | None:
    """`path` normalised (`a/../b` -> `b`), or None with a problem when it is not a relative path inside the
    repository."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS or "\0" in path:
        problems.append(f"{where}: expected a relative path of 1 to {MAX_PATH_CHARS} characters, got "
                        f"{_preview(path)}")
        return None
    normal = posixpath.normpath(path)
    if posixpath.isabs(normal) or normal == ".." or normal.startswith("../") or normal == ".":
        problems.append(f"{where}: {_preview(path)} is outside the repository (it resolves to {_preview(normal)})")
        return None
    return normal


def _preview(value) -> str:
    if isinstance(value, (dict, list)):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _string(payload: dict, key: str, problems: list[str], limit: int = 1024, required: bool = True,
            where: str = "") -> None:
    value = payload.get(key)
    if value is None and not required:
        return
    if not isinstance(value, str) or len(value) > limit:
        problems.append(f"{where}{key}: expected a string of at most {limit} characters, got {_preview(value)}")


def shape_problems(payload) -> list[str]:
    """Every problem with the fields the decision reads, one line each (at most MAX_PROBLEMS, then a count).
    Paths are checked here too: a path outside the repository is a problem."""
    if not isinstance(payload, dict):
        return [f"expected a JSON object (a push event), got {_preview(payload)}"]
    problems: list[str] = []
    _string(payload, "ref", problems)
    after = payload.get("after")
    if not isinstance(after, str) or not COMMIT_SHA.match(after):
        problems.append(f"after: expected a commit id (40 or 64 hex digits), got {_preview(after)}")
    repository = payload.get("repository")
    if repository is not None and not isinstance(repository, dict):
        problems.append(f"repository: expected an object, got {_preview(repository)}")
    elif repository:
        _string(repository, "clone_url", problems, required=False, where="repository.")
    total = payload.get("total_commits")
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or not 0 <= total <= 10**7):
        problems.append(f"total_commits: expected an integer in [0, 10,000,000], got {_preview(total)}")
    commits = payload.get("commits")
    if commits is None:
        commits = []
    if not isinstance(commits, list) or len(commits) > MAX_COMMITS:
        problems.append(f"commits: expected a list of at most {MAX_COMMITS} commits, got {_preview(commits)}")
        commits = []
    paths = 0
    for i, commit in enumerate(commits):
        if not isinstance(commit, dict):
            problems.append(f"commits[{i}]: expected an object, got {_preview(commit)}")
            continue
        _string(commit, "timestamp", problems, 64, required=False, where=f"commits[{i}].")
        for key in ("added", "modified", "removed"):
            listed = commit.get(key)
            if listed is None:
                continue
            if not isinstance(listed, list):
                problems.append(f"commits[{i}].{key}: expected a list of paths, got {_preview(listed)}")
                continue
            paths += len(listed)
            if paths > MAX_PATHS:
                problems.append(f"commits: more than {MAX_PATHS:,} changed paths")
                return _capped(problems)
            for j, path in enumerate(listed):
                repo_path(path, f"commits[{i}].{key}[{j}]", problems)
        if len(problems) > MAX_PROBLEMS:
            break
    return _capped(problems)


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return problems[:MAX_PROBLEMS] + [f"... and more problems after these {MAX_PROBLEMS}"]
