"""Promotion and rollback: a `current` pointer over complete builds, with an append-only history.

    python -m jobs.core.cli promote v2      # make v2 current (it must exist and have passed its gate)
    python -m jobs.core.cli rollback        # back to the build promoted before the current one
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from jobs.core import keys
from jobs.core.errors import QslmError
from jobs.core.provenance import sha256_file
from jobs.core.store import StoreError


class RegistryError(QslmError):
    pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(store, tag: str) -> dict:
    try:
        return json.loads(store.get_bytes(keys.manifest_key(tag)))
    except StoreError:
        raise RegistryError(f"build {tag!r} is not complete in the store {store.url} (no {keys.manifest_key(tag)}); "
                            f"complete builds: {', '.join(complete_tags(store)) or '(none)'}") from None


def complete_tags(store) -> list[str]:
    return [t for t in (keys.tag_of_manifest_key(k) for k in store.list("builds/")) if t]


def history(store) -> list[dict]:
    if not store.exists(keys.HISTORY_KEY):
        return []
    return [json.loads(line) for line in store.get_bytes(keys.HISTORY_KEY).decode().splitlines() if line.strip()]


def current_tag(store) -> str | None:
    if not store.exists(keys.CURRENT_KEY):
        return None
    return json.loads(store.get_bytes(keys.CURRENT_KEY))["tag"]


def _promoted_stack(events: list[dict]) -> list[str]:
    """Replay the history: promote pushes a tag, rollback pops one; the top is current."""
    stack: list[str] = []
    for e in events:
        if e["action"] == "promote":
            stack.append(e["tag"])
        elif e["action"] == "rollback" and stack:
            stack.pop()
    return stack


def _record(store, event: dict) -> None:
    events = history(store) + [event]
    body = "".join(json.dumps(e, sort_keys=True) + "\n" for e in events)
    store.put_bytes(keys.HISTORY_KEY, body.encode())
    store.put_bytes(keys.CURRENT_KEY, json.dumps({"tag": event["tag"], "since": event["at"]}, indent=2).encode())


def promote(store, tag: str) -> dict:
    manifest = read_manifest(store, tag)
    if manifest.get("status") != "passed":
        raise RegistryError(f"build {tag!r} has status {manifest.get('status')!r}: only a build that passed its "
                            f"eval gate can be promoted (see `make show VERSION={tag}`)")
    previous = current_tag(store)
    if previous == tag:
        raise RegistryError(f"build {tag!r} is already current")
    event = {"action": "promote", "tag": tag, "from": previous, "at": _now()}
    _record(store, event)
    return event


def rollback(store) -> dict:
    stack = _promoted_stack(history(store))
    if len(stack) < 2:
        raise RegistryError("nothing to roll back to: fewer than two builds have been promoted "
                            f"(history: {' -> '.join(stack) or 'empty'})")
    event = {"action": "rollback", "tag": stack[-2], "from": stack[-1], "at": _now()}
    _record(store, event)
    return event


def previous_build(store, tag: str) -> str | None:
    """The build to compare against: the promoted `current` one, else the newest complete build that passed."""
    current = current_tag(store)
    if current and current != tag:
        return current
    best = None
    for t in complete_tags(store):
        if t == tag:
            continue
        m = read_manifest(store, t)
        if m.get("status") == "passed" and (best is None or m["created_at"] > best[0]):
            best = (m["created_at"], t)
    return best[1] if best else None


class IntegrityError(RegistryError):
    """A committed build whose stored files do not match its manifest (tampered, or damaged in the store)."""


def _files(manifest: dict, tag: str, artifact: str) -> list[tuple[str, dict]]:
    """(store key, {path, sha256, bytes}) of every file of one artifact, as its manifest lists them."""
    prefix = keys.artifact_prefix(tag, artifact)
    return [(prefix + rec["path"], rec) for rec in manifest["artifacts"][artifact]]


def fetch_artifact(store, tag: str, artifact: str, dest: str | Path) -> dict:
    """Download one artifact folder of a complete build (dataset, adapter or report) into `dest`, checking every
    file against the sha256 its manifest records; returns the manifest. A file that is missing or differs
    raises IntegrityError naming it, and nothing of that artifact is left in `dest` half-checked."""
    manifest = read_manifest(store, tag)
    dest = Path(dest)
    bad = []
    for key, rec in _files(manifest, tag, artifact):
        path = dest / rec["path"]
        try:
            store.get_file(key, path)
        except StoreError:
            bad.append(f"{rec['path']} (missing)")
            continue
        if sha256_file(path) != rec["sha256"]:
            bad.append(f"{rec['path']} (sha256 differs from the manifest)")
    if bad:
        shutil.rmtree(dest, ignore_errors=True)
        raise IntegrityError(f"build {tag!r} in {store.url}: its {artifact} does not match its manifest: "
                             f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}. Do not use or promote it; "
                             f"`make verify VERSION={tag}` lists every damaged file")
    return manifest
