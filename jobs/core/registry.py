"""Promotion and rollback: a `current` pointer over complete builds, with an append-only history.

    python -m jobs.core.cli promote v2      # make v2 current (it must exist and have passed its gate)
    python -m jobs.core.cli rollback        # back to the build promoted before the current one
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from jobs.core import keys
from jobs.core.errors import QslmError
from jobs.core.provenance import sha256_file
from jobs.core.spec import TAG_PATTERN
from jobs.core.store import StoreError


class RegistryError(QslmError):
    pass


class IntegrityError(RegistryError):
    """A committed build whose stored files do not match its manifest (tampered, or damaged in the store)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(store, tag: str) -> dict:
    if not isinstance(tag, str) or not TAG_PATTERN.match(tag):
        raise RegistryError(f"{str(tag)[:80]!r} is not a valid build tag: letters, digits, '.', '_' or '-'")
    try:
        raw = store.get_bytes(keys.manifest_key(tag))
    except StoreError:
        if store.exists(keys.manifest_key(tag)):
            raise  # the store failed: its own message says why
        raise RegistryError(f"build {tag!r} is not complete in the store {store.url} (no {keys.manifest_key(tag)}); "
                            f"complete builds: {', '.join(complete_tags(store)) or '(none)'}") from None
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        manifest = None
    if not isinstance(manifest, dict):
        raise IntegrityError(f"build {tag!r} in {store.url}: {keys.manifest_key(tag)} is not a JSON manifest; the "
                             f"store is damaged there: do not use or promote this build")
    return manifest


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
    _check_intact(store, tag)
    event = {"action": "promote", "tag": tag, "from": previous, "at": _now()}
    _record(store, event)
    return event


def rollback(store) -> dict:
    stack = _promoted_stack(history(store))
    if len(stack) < 2:
        raise RegistryError("nothing to roll back to: fewer than two builds have been promoted "
                            f"(history: {' -> '.join(stack) or 'empty'})")
    _check_intact(store, stack[-2])
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
        try:
            m = read_manifest(store, t)
        except IntegrityError:
            continue  # a damaged manifest is never the build to compare against
        if m.get("status") == "passed" and (best is None or m["created_at"] > best[0]):
            best = (m["created_at"], t)
    return best[1] if best else None


def artifact_files(manifest: dict, tag: str, artifact: str) -> list[tuple[str, dict]]:
    """(store key, {path, sha256, bytes}) of every file of one artifact, as its manifest lists them: under the
    attempt the manifest names (schema 2), or builds/<tag>/<artifact>/ for a schema-1 manifest."""
    prefix = keys.artifact_prefix(tag, artifact, manifest.get("attempt"))
    records = manifest.get("artifacts", {}).get(artifact)
    if not isinstance(records, list) or not records:
        raise IntegrityError(f"build {tag!r}: its manifest lists no {artifact} files; the manifest is damaged: "
                             f"do not use or promote this build")
    return [(prefix + rec["path"], rec) for rec in records]


def listed_keys(manifest: dict, tag: str) -> set[str]:
    """Every key a committed build owns: its manifest and the files it lists (`make gc` keeps exactly these)."""
    return {keys.manifest_key(tag)} | {key for artifact in build_artifacts(manifest)
                                       for key, _ in artifact_files(manifest, tag, artifact)}


def build_artifacts(manifest: dict) -> list[str]:
    """The artifacts a build has: every one of keys.ARTIFACTS, and the optional ones (the index) it lists."""
    return [*keys.ARTIFACTS, *(a for a in keys.OPTIONAL_ARTIFACTS if a in manifest.get("artifacts", {}))]


@dataclass
class Verification:
    tag: str
    files: int = 0
    bytes: int = 0
    damaged: list[str] = field(default_factory=list)  # "<key> (missing)" or "<key> (sha256 differs)"


def verify_build(store, tag: str) -> Verification:
    """Re-hash every file a committed build's manifest lists (artifacts and source documents) in the store."""
    manifest = read_manifest(store, tag)
    files = [f for artifact in build_artifacts(manifest) for f in artifact_files(manifest, tag, artifact)]
    files += [(keys.source_key(rec["sha256"]), rec) for rec in manifest.get("sources", [])]
    result = Verification(tag)
    for key, rec in files:
        try:
            digest = store.sha256(key)
        except StoreError:
            if store.exists(key):
                raise  # the store failed: its own message says why
            result.damaged.append(f"{key} (missing)")
            continue
        result.files, result.bytes = result.files + 1, result.bytes + int(rec.get("bytes", 0))
        if digest != rec["sha256"]:
            result.damaged.append(f"{key} (sha256 differs from the manifest)")
    return result


def _damaged(store, tag: str, what: str, bad: list[str]) -> IntegrityError:
    return IntegrityError(f"build {tag!r} in {store.url} does not match its manifest ({what}): "
                          f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}. Do not use or promote it; "
                          f"`make verify VERSION={tag}` lists every damaged file")


def _check_intact(store, tag: str) -> Verification:
    result = verify_build(store, tag)
    if result.damaged:
        raise _damaged(store, tag, "stored files", result.damaged)
    return result


def _checked_file(store, tag: str, artifact: str, path: str) -> tuple[str, bytes]:
    """(store key, content) of one file of a committed build's artifact, checked against its manifest's sha256."""
    manifest = read_manifest(store, tag)
    found = [(key, rec) for key, rec in artifact_files(manifest, tag, artifact) if rec["path"] == path]
    if not found:
        raise RegistryError(f"build {tag!r} has no {artifact}/{path} (its manifest does not list it)")
    key, rec = found[0]
    data = store.get_bytes(key)
    if hashlib.sha256(data).hexdigest() != rec["sha256"]:
        raise _damaged(store, tag, f"{artifact}/{path}", [f"{key} (sha256 differs from the manifest)"])
    return key, data


def read_artifact_file(store, tag: str, artifact: str, path: str) -> bytes:
    """One file of a committed build's artifact, checked against the sha256 its manifest records."""
    return _checked_file(store, tag, artifact, path)[1]


def previous_report_key(store, previous: str) -> str:
    """The store key of the previous build's report/metrics.json, after re-hashing it against the manifest ("" when
    there is no previous build): a run's eval fetches that key itself (a cluster run takes it as an input)."""
    return _checked_file(store, previous, "report", "metrics.json")[0] if previous else ""


def fetch_artifact(store, tag: str, artifact: str, dest: str | Path) -> dict:
    """Download one artifact folder of a complete build (dataset, adapter or report) into `dest`, checking every
    file against the sha256 its manifest records; returns the manifest. A file that is missing or differs
    raises IntegrityError naming it, and nothing of that artifact is left in `dest` half-checked."""
    manifest = read_manifest(store, tag)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        bad = []
        for key, rec in artifact_files(manifest, tag, artifact):
            try:
                store.get_file(key, tmp / rec["path"])
            except StoreError:
                if store.exists(key):
                    raise
                bad.append(f"{rec['path']} (missing)")
                continue
            if sha256_file(tmp / rec["path"]) != rec["sha256"]:
                bad.append(f"{rec['path']} (sha256 differs from the manifest)")
        if bad:
            raise _damaged(store, tag, artifact, bad)
        for path in sorted(tmp.rglob("*")):  # checked: now into dest, which may already exist
            if path.is_file():
                target = dest / path.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest
