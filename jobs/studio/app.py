"""The studio's routes: pages rendered on the server from the store (records.py) and the running builds' progress
files (jobs/core/progress.py). Read-only unless the app is made with allow_changes: then promote, rollback and
the review of draft suites (drafts.py) are POST forms that carry a per-process CSRF token and must come from this
origin, and they run the CLI's own code (the registry's promote/rollback, `make review`'s decide)."""

from __future__ import annotations

import hmac
import mimetypes
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from jobs.core import progress
from jobs.core.store import registry
from jobs.core.errors import QslmError
from jobs.core.store.registry import IntegrityError
from jobs.core.repo import BUILDS_DIR
from jobs.core.spec.suite import SuiteError
from jobs.core.spec.tags import TAG_PATTERN
from jobs.eval.report import LABELS, flat_stats
from jobs.studio import Refused, StudioError, drafts, records as data
from jobs.studio.conversation import ChatHost, WithChat
from jobs.studio.svg import loss_svg

HERE = Path(__file__).parent
SORTABLE = ("tag", "status", "date", "base_model", "data_commit", "dataset_bytes", "seconds", "concept_recall",
            "similarity", "rougeL", "perplexity")
SHOWN_METRICS = ("concept_recall", "similarity", "rougeL", "perplexity")
LOG_LINES = 40
NAV = {"builds": "builds", "build": "builds", "damaged": "builds", "compare": "compare", "chat": "chat",
       "running": "running", "review": "review", "drafts": "review"}  # template -> the header link it sits under
FORM_BYTES = 64 << 10  # a review form: a question (4,000 characters), a reference (8,000) and concepts, URL-encoded


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["j2"]))
    env.globals.update(LABELS=LABELS, SHOWN_METRICS=SHOWN_METRICS, clock=progress.clock)
    env.filters["mb"] = lambda n: "–" if n is None else f"{n / 1e6:,.2f} MB"
    return env


def _sort_key(column: str):
    def key(row: dict):
        if column in SHOWN_METRICS:
            value = (row.get("headline") or {}).get(column, {}).get("value")
        else:
            value = row.get(column)
        return (value is None, value if value is not None else "")
    return key


def make_app(store, work_root: Path, allow_changes: bool = False, device: str = "auto", specs: Path = BUILDS_DIR):
    """The studio over `store`; running builds from `work_root`/progress/; draft suites of the build specs in
    `specs` (reviewed only with allow_changes). Returns the ASGI app."""
    app = FastAPI(title="quantum-slm studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    env = _templates()
    token = secrets.token_urlsafe(32)
    host = ChatHost(store, device)

    def page(name: str, code: int = 200, **context) -> HTMLResponse:
        nav = NAV.get(name.split(".")[0], "")
        html = env.get_template(name).render(allow_changes=allow_changes, csrf=token, store_url=store.url, nav=nav,
                                             **context)
        return HTMLResponse(html, status_code=code)

    def tag_ok(tag: str) -> str:
        if not TAG_PATTERN.match(tag or ""):
            raise StudioError(f"{tag[:80]!r} is not a build tag")
        return tag

    @app.exception_handler(QslmError)
    async def qslm_error(_request, exc: QslmError):
        code = 409 if isinstance(exc, IntegrityError) else 403 if isinstance(exc, Refused) else 404
        return page("error.html.j2", code=code,
                    message=str(exc), damaged=isinstance(exc, IntegrityError))

    @app.get("/", response_class=HTMLResponse)
    def builds(sort: str = "date", order: str = "desc", q: str = "", status: str = ""):
        rows = data.build_rows(store)
        if q:
            rows = [r for r in rows if q.lower() in " ".join(str(r.get(k, "")) for k in
                                                            ("tag", "base_model", "data_commit", "status")).lower()]
        if status:
            rows = [r for r in rows if r["status"] == status]
        if sort in SORTABLE:
            rows.sort(key=_sort_key(sort), reverse=order == "desc")
        return page("builds.html.j2", rows=rows, sort=sort, order=order, q=q, status=status,
                    current=registry.current_tag(store), running=_running(work_root))

    @app.get("/builds/{tag}", response_class=HTMLResponse)
    def build(tag: str):
        d = data.build_detail(store, tag_ok(tag))
        if d["manifest"] is None or d["damaged"]:
            return page("damaged.html.j2", code=409, tag=tag, damaged=d["damaged"], files=d.get("files"))
        train = d["train"]["value"] if d["train"]["ok"] else None
        stats = flat_stats(d["stats"]["value"]) if d["stats"]["ok"] else []
        return page("build.html.j2", d=d, m=d["manifest"], row=d["row"], stats=stats,
                    loss=loss_svg({tag: data.loss_points(train)}))

    @app.get("/builds/{tag}/files/{artifact}/{path:path}")
    def download(tag: str, artifact: str, path: str):
        body = registry.read_artifact_file(store, tag_ok(tag), artifact, path)  # re-hashed; IntegrityError: 409
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        headers = {"Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"}
        if not kind.startswith(("text/html", "image/")):
            headers["Content-Disposition"] = f'attachment; filename="{Path(path).name}"'
        return Response(body, media_type=kind, headers=headers)

    @app.get("/compare", response_class=HTMLResponse)
    def compare(a: str = "", b: str = ""):
        tags = registry.complete_tags(store)
        result = data.compare(store, tag_ok(a), tag_ok(b)) if a and b else None
        loss = loss_svg(result["loss"], "training loss, both builds") if result and not result["damaged"] else ""
        return page("compare.html.j2", tags=tags, a=a, b=b, r=result, loss=loss,
                    code=409 if result and result["damaged"] else 200)

    @app.get("/chat", response_class=HTMLResponse)
    def chat():
        return page("chat.html.j2", models=data.chat_models(store), current=registry.current_tag(store))

    @app.post("/chat/load")
    async def chat_load(request: Request):
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("tags"), list):
            raise StudioError('a chat load is {"tags": [tag, ...], "csrf": token}')
        _check_csrf(request, str(body.get("csrf", "")), token)
        tags = [tag_ok(str(t)) for t in body["tags"]][:2]
        if not tags:
            raise StudioError("pick a build to chat with")
        try:
            return await run_in_threadpool(host.load, tags)
        except QslmError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)

    @app.get("/running", response_class=HTMLResponse)
    def running():
        return page("running.html.j2", builds=_running(work_root), one=None)

    @app.get("/running/{tag}", response_class=HTMLResponse)
    def running_one(tag: str):
        return page("running.html.j2", builds=[], one=_state(work_root, tag_ok(tag)))

    @app.get("/running/{tag}/state")
    def running_state(tag: str):
        s = _state(work_root, tag_ok(tag))
        return {**{k: s[k] for k in ("state", "stage", "index", "of", "elapsed_s", "remaining_s", "status",
                                  "failed_stage")},
                "train": s["train"], "synthesis": s["synthesis"], "log": s["log"], "loss_svg": str(s["loss_svg"])}

    @app.post("/builds/{tag}/promote")
    async def promote(request: Request, tag: str):
        await _check_changes(allow_changes, request, token)
        await run_in_threadpool(registry.promote, store, tag_ok(tag))  # re-hashes the build first, as the CLI does
        return RedirectResponse("/", status_code=303)

    @app.post("/rollback")
    async def rollback(request: Request):
        await _check_changes(allow_changes, request, token)
        await run_in_threadpool(registry.rollback, store)
        return RedirectResponse("/", status_code=303)

    @app.get("/review", response_class=HTMLResponse)
    def review_list():
        _allowed(allow_changes)
        return page("review.html.j2", rows=drafts.suites(specs), specs=specs)

    @app.get("/review/{tag}", response_class=HTMLResponse)
    async def review_one(tag: str):
        _allowed(allow_changes)
        return page("drafts.html.j2", r=await run_in_threadpool(drafts.drafts, specs, tag_ok(tag)))

    @app.post("/review/{tag}")
    async def review_decide(request: Request, tag: str):
        form = await _check_changes(allow_changes, request, token)
        tag = tag_ok(tag)
        try:
            await run_in_threadpool(drafts.decide, specs, tag, form)
        except (SuiteError, StudioError) as exc:  # a bad edit: the loader's message, the file left as it was
            r = await run_in_threadpool(drafts.drafts, specs, tag)
            return page("drafts.html.j2", code=400, r=r, error=str(exc), form=form)
        return RedirectResponse(f"/review/{tag}", status_code=303)

    wrapped = WithChat(app, host)
    wrapped.host = host
    return wrapped


def _allowed(allowed: bool) -> None:
    if not allowed:
        raise Refused("the studio is read-only: start it with --allow-changes (make studio CHANGES=1) to promote, "
                      "roll back or review draft suites, or use `make promote VERSION=...`, `make rollback`, "
                      "`make review VERSION=...`")


async def _check_changes(allowed: bool, request: Request, token: str) -> dict[str, str]:
    """Only with --allow-changes, and only a form of this studio's own page; returns the form's fields (read up to
    FORM_BYTES, each field's first value)."""
    _allowed(allowed)
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > FORM_BYTES:
            raise Refused(f"refused a form over {FORM_BYTES:,} bytes: shorten the question, reference or concepts")
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    _check_csrf(request, form.get("csrf", ""), token)
    return form


def _check_csrf(request: Request, given: str, token: str) -> None:
    """A form or call from this studio's own page: its token, and (when the browser sends one) its origin."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise Refused(f"refused a request from another site ({origin[:80]})")
    if not hmac.compare_digest(str(given), token):
        raise Refused("refused a request without this page's token: reload the page and try again")


def _running(work_root: Path) -> list[dict]:
    out = []
    for path in progress.build_files(work_root):
        s = progress.summary(progress.read_events(path))
        if s["tag"]:
            out.append(s)
    return out


def _state(work_root: Path, tag: str) -> dict:
    path = progress.event_file(work_root, tag)
    if not path.is_file():
        raise StudioError(f"no progress file for build {tag!r} in {progress.progress_dir(work_root)}; running "
                          f"builds: {', '.join(s['tag'] for s in _running(work_root)) or 'none'}")
    s = progress.summary(progress.read_events(path))
    s["log"] = progress.log_tail(path, LOG_LINES)
    s["loss_svg"] = loss_svg({tag: s["loss"]}, "training loss (live)")
    return s
