"""The store's command line: what `make list`, `make show`, `make promote` and `make rollback` run.

    python -m jobs.core.cli list
    python -m jobs.core.cli show v1
    python -m jobs.core.cli promote v2
    python -m jobs.core.cli rollback
"""

from __future__ import annotations

import argparse
import json
import sys

from jobs.core import keys
from jobs.core.errors import QslmError
from jobs.core.registry import complete_tags, current_tag, promote, read_manifest, rollback
from jobs.core.spec import HEADLINE
from jobs.core.store import open_store

COLUMNS = HEADLINE[:4]  # the scores `make list` shows


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def list_builds(store) -> str:
    current = current_tag(store)
    tags = {k.split("/")[1] for k in store.list("builds/") if k.count("/") >= 2}
    complete = set(complete_tags(store))
    rows = [("", "tag", "status", "created", "commit", *COLUMNS)]
    for tag in sorted(tags, key=lambda t: (t not in complete, t)):
        if tag not in complete:
            rows.append(("", tag, "incomplete", "-", "-", *("-" for _ in COLUMNS)))
            continue
        m = json.loads(store.get_bytes(keys.manifest_key(tag)))
        commit = (m.get("git", {}).get("commit") or "unknown")[:8] + ("+" if m.get("git", {}).get("dirty") else "")
        rows.append(("*" if tag == current else "", tag, m["status"], m["created_at"][:19], commit,
                     *(_fmt(m.get("metrics", {}).get(h)) for h in COLUMNS)))
    if len(rows) == 1:
        return f"no builds in {store.url} yet: run `make build VERSION=smoke`"
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines + [f"\nstore: {store.url}   (* = current; incomplete = interrupted, never promoted)"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Builds in the store (QSLM_STORE: a directory or s3://bucket).")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="every build with its status and headline scores")
    sub.add_parser("show", help="a build's manifest").add_argument("tag")
    sub.add_parser("promote", help="make a build that passed its gate the current one").add_argument("tag")
    sub.add_parser("rollback", help="make the previously promoted build current again")
    args = p.parse_args(argv)
    try:
        store = open_store()
        if args.cmd == "list":
            print(list_builds(store))
        elif args.cmd == "show":
            print(json.dumps(read_manifest(store, args.tag), indent=2, sort_keys=True))
        elif args.cmd == "promote":
            e = promote(store, args.tag)
            print(f"current: {e['tag']} (was {e['from'] or 'none'})")
        elif args.cmd == "rollback":
            e = rollback(store)
            print(f"current: {e['tag']} (rolled back from {e['from']})")
    except QslmError as exc:
        print(f"{args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
