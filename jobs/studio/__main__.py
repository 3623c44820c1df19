"""python -m jobs.studio [--port 8080] [--allow-changes] [--work .work] [--specs data/builds]
                                                                   (`make studio [PORT=8080] [CHANGES=1]`)

The studio on http://127.0.0.1:PORT over the store in QSLM_STORE (a directory or s3://bucket): builds, a build's
report, comparisons, running builds (from the local build driver's progress files under --work) and a chat.
Read-only unless --allow-changes (promote and rollback through the registry, and the review of the draft suites
of the specs in --specs through `make review`'s code; CSRF-protected).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.core.errors import QslmError
from jobs.core.repo import BUILDS_DIR, REPO_ROOT
from jobs.core.store.backends import open_store
from jobs.studio import StudioError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.studio", description=__doc__.split("\n\n")[1])
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--work", type=Path, default=REPO_ROOT / ".work", help="the local builds' work folder")
    p.add_argument("--allow-changes", action="store_true", help="show promote, rollback and the draft suites' review")
    p.add_argument("--specs", type=Path, default=BUILDS_DIR, help="the build specs whose draft suites are reviewed")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="for the chat's model")
    args = p.parse_args(argv)
    try:
        store = open_store()
        store.list("registry/")  # an unreachable store fails now, with its own message
        if not args.specs.is_dir():
            raise StudioError(f"--specs {args.specs}: not a folder; give the folder of build specs (data/builds)")
    except QslmError as exc:
        print(f"studio: error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from jobs.studio.app import make_app

    app = make_app(store, args.work, args.allow_changes, args.device, args.specs)
    mode = "promote, rollback and review allowed" if args.allow_changes else "read-only"
    print(f"studio over {store.url} at http://127.0.0.1:{args.port}/ ({mode}; Ctrl-C stops)", flush=True)
    try:
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    finally:
        app.host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
