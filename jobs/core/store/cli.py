"""The store's command line: what `make list`, `show`, `verify`, `promote`, `rollback` and `gc` run.

    python -m jobs.core.store.cli list
    python -m jobs.core.store.cli show v1 [--raw]  # a summary (--raw: the manifest), then every file re-hashed
    python -m jobs.core.store.cli report v1        # the report fetched and checked; its path printed (and opened)
    python -m jobs.core.store.cli verify v1        # every file re-hashed; exit 2 naming each damaged one
    python -m jobs.core.store.cli promote v2       # re-hashes v2 first
    python -m jobs.core.store.cli rollback
    python -m jobs.core.store.cli gc [--apply] [--min-age-hours 24] [--clear-cache WRITER|all]
"""

from __future__ import annotations

import argparse
import json
import sys

from jobs.core.store import gc
from jobs.core.store import overview as summary
from jobs.core.errors import QslmError
from jobs.core.store.registry import (IntegrityError, RegistryDamage, RegistryError, complete_tags, current_tag,
    promote, read_manifest, rollback, verify_build)
from jobs.core.spec.metrics import HEADLINE
from jobs.core.store.backends import open_store

COLUMNS = HEADLINE[:4]  # the scores `make list` shows


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def list_builds(store) -> str:
    try:
        current, damage = current_tag(store), ""
    except RegistryDamage as exc:  # the builds can still be listed; which one is current cannot be known
        current, damage = None, f"\nregistry damaged, current build unknown: {exc}"
    tags = {k.split("/")[1] for k in store.list("builds/") if k.count("/") >= 2}
    complete = set(complete_tags(store))
    rows = [("", "tag", "status", "created", "commit", *COLUMNS)]
    for tag in sorted(tags, key=lambda t: (t not in complete, t)):
        if tag not in complete:
            rows.append(("", tag, "incomplete", "-", "-", *("-" for _ in COLUMNS)))
            continue
        try:
            m = read_manifest(store, tag)
        except IntegrityError:
            rows.append(("", tag, "DAMAGED", "-", "-", *("-" for _ in COLUMNS)))
            continue
        commit = (m.get("git", {}).get("commit") or "unknown")[:8] + ("+" if m.get("git", {}).get("dirty") else "")
        rows.append(("*" if tag == current else "", tag, m["status"], m["created_at"][:19], commit,
                     *(_fmt(m.get("metrics", {}).get(h)) for h in COLUMNS)))
    if len(rows) == 1:
        return f"no builds in {store.url} yet: run `make build VERSION=smoke`"
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines + [f"\nstore: {store.url}   (* = current; incomplete = interrupted, never promoted)"]) + damage


def verify_text(store, tag: str) -> str:
    """One line when every file matches; raises IntegrityError listing every damaged file otherwise."""
    result = verify_build(store, tag)
    if result.damaged:
        raise IntegrityError(f"build {tag!r} in {store.url}: {len(result.damaged)} of "
                             f"{result.files + len(result.damaged)} file(s) do not match its manifest; do not use "
                             f"or promote it:\n" + "\n".join(f"  - {d}" for d in result.damaged))
    return f"verified {tag}: {result.files} files ({result.bytes / 1e6:.1f} MB) match the sha256 in its manifest"


def run_gc(store, apply: bool, min_age_hours: float, clear_cache: str | None = None) -> str:
    min_age_s = min_age_hours * 3600
    if not min_age_s <= 100 * 365 * 86400:  # NaN fails this too
        raise RegistryError(f"--min-age-hours {min_age_hours:g} is not a number of hours below a century")
    if min_age_s < gc.MIN_AGE_FLOOR_S:
        raise RegistryError(f"--min-age-hours {min_age_hours:g} is below {gc.MIN_AGE_FLOOR_S / 3600:g}: a "
                            f"younger attempt may still be publishing")
    garbage, kept = gc.find_garbage(store, min_age_s)
    if clear_cache:
        garbage += gc.cache_garbage(store, clear_cache)
    if apply:
        gc.collect(store, garbage)
    return "\n".join(gc.cache_text(store) + [gc.gc_text(store, garbage, kept, apply, min_age_s)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Builds in the store (QSLM_STORE: a directory or s3://bucket).")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="every build with its status and headline scores")
    show = sub.add_parser("show", help="a build's summary (--raw: its manifest), then its files re-hashed")
    show.add_argument("tag")
    show.add_argument("--raw", action="store_true", help="print the manifest as stored instead of the summary")
    sub.add_parser("report", help="fetch a build's report (checked), print its path, open it").add_argument("tag")
    sub.add_parser("verify", help="re-hash every file of a build against its manifest").add_argument("tag")
    sub.add_parser("promote", help="make a build that passed its gate the current one").add_argument("tag")
    sub.add_parser("rollback", help="make the previously promoted build current again")
    g = sub.add_parser("gc", help="list (or --apply: remove) what interrupted or losing publishes left")
    g.add_argument("--apply", action="store_true", help="remove them (default: only list them)")
    g.add_argument("--min-age-hours", type=float, default=24.0,
                   help="leave uncommitted attempts and unfinished writes younger than this (default 24)")
    g.add_argument("--clear-cache", metavar="WRITER", help="also remove the synthesis cache of this writer (its "
                   "folder or name as `gc` lists it), or of all writers: all")
    args = p.parse_args(argv)
    try:
        store = open_store()
        if args.cmd == "list":
            print(list_builds(store))
        elif args.cmd == "show":
            text = json.dumps(read_manifest(store, args.tag), indent=2, sort_keys=True) if args.raw else \
                summary.summary(store, args.tag)
            print(text, flush=True)
            print(verify_text(store, args.tag))
        elif args.cmd == "report":
            path = summary.report(store, args.tag)
            print(f"report of {args.tag}: {path}\n  (stored at {summary.stored_at(store, args.tag)}; "
                  f"{'opened in your browser' if summary.has_browser() else 'no display here: open it in a browser'})")
        elif args.cmd == "verify":
            print(verify_text(store, args.tag))
        elif args.cmd == "promote":
            e = promote(store, args.tag)
            print(f"current: {e['tag']} (was {e['from'] or 'none'})")
        elif args.cmd == "rollback":
            e = rollback(store)
            print(f"current: {e['tag']} (rolled back from {e['from']})")
        elif args.cmd == "gc":
            print(run_gc(store, args.apply, args.min_age_hours, args.clear_cache))
    except QslmError as exc:
        print(f"{args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
