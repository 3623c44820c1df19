"""Promotion and rollback: a `current` pointer over complete builds, with an append-only history.

    python -m jobs.core.store.cli promote v2      # make v2 current (it must exist and have passed its gate)
    python -m jobs.core.store.cli rollback        # back to the build promoted before the current one
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from jobs.core.store import keys
from jobs.core.store import lineage
from jobs.core.errors import QslmError
from jobs.core.store.provenance import sha256_file
from jobs.core.spec.tags import check_tag, is_tag
from jobs.core.store.backends import StoreError


class RegistryError(QslmError):
    pass


class IntegrityError(RegistryError):
    """A committed build whose stored files do not match its manifest (tampered, or damaged in the store)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def refuse_complete(store, tag: str, error: type[Exception], spec: str | None = None) -> None:
    """The one rule every command that starts a build applies first: a tag complete in the store is immutable."""
    if store.exists(keys.manifest_key(tag)):
        raise error(f"build {tag!r} is already complete in {store.url}; a tag is immutable. Nothing was written. "
                    f"Use a new tag (copy data/builds/{spec or tag}.yaml to a new name).")


def read_manifest(store, tag: str) -> dict:
    check_tag(tag, RegistryError)
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


class RegistryDamage(RegistryError):
    """registry/history.jsonl or current.json that is not what this module writes (edited by hand, a merge
    conflict, a truncated copy): the message names the file, the line and how to repair it."""


ACTIONS = ("promote", "rollback")
CHANGE_TRIES = 30  # conditional writes of the history before giving up (each loser re-reads and retries)
EVENT_HELP = ('each line is one JSON event such as {"action": "promote", "tag": "v2", "from": "v1", '
              '"at": "2026-01-01T00:00:00+00:00"}')


def _parse_history(store, raw: bytes | None) -> list[dict]:
    """The events of history.jsonl; RegistryDamage naming the first bad line."""
    if raw is None:
        return []
    where = f"{keys.HISTORY_KEY} in {store.url}"
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise RegistryDamage(f"{where} is damaged: it is not UTF-8 text. Restore it from a backup, or rewrite it "
                             f"({EVENT_HELP})") from None
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not (isinstance(event, dict) and event.get("action") in ACTIONS and isinstance(event.get("tag"), str)
                and is_tag(event["tag"])):
            raise RegistryDamage(f"{where} is damaged at line {number} ({line[:60]!r}{'...' if len(line) > 60 else ''}"
                                 f"): not a registry event. Repair it: fix or delete that line ({EVENT_HELP}); "
                                 f"promote and rollback refuse to run until it is repaired")
        events.append(event)
    return events


def history(store) -> list[dict]:
    """Every promote and rollback, oldest first; RegistryDamage when the file is damaged."""
    return _parse_history(store, store.get_versioned(keys.HISTORY_KEY)[0])


def _current_file(store) -> str | None:
    """The tag current.json names (a copy of the history's outcome for people and tools); RegistryDamage if bad."""
    raw, _ = store.get_versioned(keys.CURRENT_KEY)
    if raw is None:
        return None
    try:
        tag = json.loads(raw).get("tag")
    except (ValueError, UnicodeDecodeError, AttributeError):
        tag = None
    if not is_tag(tag):
        raise RegistryDamage(f"{keys.CURRENT_KEY} in {store.url} is damaged (not {{\"tag\": ..., \"since\": ...}}): "
                             f"delete it; the next promote or rollback writes it again from the history")
    return tag


def _warn(message: str) -> None:
    print(f"registry: warning: {message}", file=sys.stderr, flush=True)


def current_tag(store) -> str | None:
    """The promoted build: the outcome of the history (the record of truth); when the history is damaged, the
    tag current.json names, with a warning. RegistryDamage only when neither can be read."""
    try:
        stack = _promoted_stack(history(store))
        return stack[-1] if stack else None
    except RegistryDamage as damage:
        try:
            tag = _current_file(store)
        except RegistryDamage as second:
            raise RegistryDamage(f"{damage}; and {second}") from None
        _warn(f"{damage}; using {keys.CURRENT_KEY}, which names {tag!r}")
        return tag


def _promoted_stack(events: list[dict]) -> list[str]:
    """Replay the history: promote pushes a tag, rollback pops one; the top is current."""
    stack: list[str] = []
    for e in events:
        if e["action"] == "promote":
            stack.append(e["tag"])
        elif e["action"] == "rollback" and stack:
            stack.pop()
    return stack


def _change(store, decide) -> dict:
    """Append the event `decide(events)` returns to the history, atomically and in order on both backends: the
    history is read with its version and written back only if unchanged (put_if: a lock locally, a conditional
    PUT on S3); a writer that lost re-reads and decides again, so N racing commands leave N events, each decided
    on the history before it. current.json follows, written only forward (by event count)."""
    event_id = uuid.uuid4().hex
    for attempt in range(CHANGE_TRIES):
        raw, version = store.get_versioned(keys.HISTORY_KEY)
        events = _parse_history(store, raw)
        mine = [e for e in events if e.get("id") == event_id]
        if mine:  # a write that timed out had landed
            event, count = mine[0], events.index(mine[0]) + 1
            break
        event = {**decide(events), "at": _now(), "id": event_id}
        body = (raw or b"") + (b"" if not raw or raw.endswith(b"\n") else b"\n")
        if store.put_if(keys.HISTORY_KEY, body + json.dumps(event, sort_keys=True).encode() + b"\n", version):
            count = len(events) + 1
            break
        time.sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))  # seconds; spreads the losers out
    else:
        raise RegistryError(f"the registry in {store.url} changed under this command {CHANGE_TRIES} times in a row; "
                            f"run it again")
    _write_current(store, _promoted_stack(_parse_history(store, store.get_versioned(keys.HISTORY_KEY)[0])), count)
    return event


def _write_current(store, stack: list[str], count: int) -> None:
    """current.json from the history's outcome after `count` events; never replaces a newer one."""
    body = json.dumps({"tag": stack[-1] if stack else None, "since": _now(), "events": count}, indent=2).encode()
    for attempt in range(CHANGE_TRIES):
        raw, version = store.get_versioned(keys.CURRENT_KEY)
        try:
            written = json.loads(raw).get("events", 0) if raw is not None else -1
        except (ValueError, UnicodeDecodeError, AttributeError):
            written = -1  # damaged: replace it
        if isinstance(written, int) and written >= count:
            return  # a later change already wrote it
        if store.put_if(keys.CURRENT_KEY, body, version):
            return
        time.sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))


def promote(store, tag: str) -> dict:
    manifest = read_manifest(store, tag)
    if manifest.get("status") != "passed":
        raise RegistryError(f"build {tag!r} has status {manifest.get('status')!r}: only a build that passed its "
                            f"eval gate can be promoted (see `make show VERSION={tag}`)")
    _check_intact(store, tag)

    def decide(events: list[dict]) -> dict:
        stack = _promoted_stack(events)
        previous = stack[-1] if stack else None
        if previous == tag:
            raise RegistryError(f"build {tag!r} is already current")
        return {"action": "promote", "tag": tag, "from": previous}
    return _change(store, decide)


def rollback(store) -> dict:
    checked: set[str] = set()

    def decide(events: list[dict]) -> dict:
        stack = _promoted_stack(events)
        if len(stack) < 2:
            raise RegistryError("nothing to roll back to: fewer than two builds have been promoted "
                                f"(history: {' -> '.join(stack) or 'empty'})")
        if stack[-2] not in checked:
            _check_intact(store, stack[-2])
            checked.add(stack[-2])
        return {"action": "rollback", "tag": stack[-2], "from": stack[-1]}
    return _change(store, decide)


def previous_build(store, tag: str, spec=None, of: dict | None = None) -> str | None:
    """The build to compare against. With the build's spec (jobs/core/store/lineage.py): the spec's `previous:` when
    it names one (it must be complete), else the promoted `current` build when it is of the same lineage (same
    suite by hash, same base model), else the newest complete build of that lineage that passed its gate (a
    failed one is no baseline); None when the lineage has no such build. `of` (a committed build's manifest,
    for `make compare` with one tag): the same rule for that build's lineage, among the builds made before it.
    Without either (callers that have none): the promoted build, else the newest that passed."""
    if spec is not None and spec.previous:
        read_manifest(store, spec.previous)  # complete, else RegistryError naming the complete builds
        return spec.previous
    mine = lineage.of_spec(spec) if spec is not None else lineage.of_manifest(of) if of is not None else None
    before = of.get("created_at") if of is not None else None

    def usable(m: dict) -> bool:
        older = before is None or (m.get("created_at") or "") < before
        return older and (mine is None or lineage.same(mine, lineage.of_manifest(m)))

    try:
        current = current_tag(store)
    except RegistryDamage as damage:  # compare with the newest passed build instead
        _warn(str(damage))
        current = None
    if current and current != tag:
        try:
            if usable(read_manifest(store, current)):
                return current
        except IntegrityError:
            pass  # a damaged manifest is never the build to compare against
    best = None
    for t in complete_tags(store):
        if t == tag:
            continue
        try:
            m = read_manifest(store, t)
        except IntegrityError:
            continue
        if m.get("status") == "passed" and usable(m) and (best is None or m["created_at"] > best[0]):
            best = (m["created_at"], t)
    return best[1] if best else None


def build_artifacts(manifest: dict) -> list[str]:
    """The artifacts a build has: every one of keys.ARTIFACTS, and the optional ones (the index) it lists."""
    return [*keys.ARTIFACTS, *(a for a in keys.OPTIONAL_ARTIFACTS if a in manifest.get("artifacts", {}))]


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
