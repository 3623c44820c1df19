"""The studio: every build in the store, its report, comparisons, a running build and a chat, in one local web
page.

    python -m jobs.studio [--port 8080] [--allow-changes]      # `make studio [PORT=8080] [CHANGES=1]`

An app over the store, not a stage: it runs no build step and has no image. It reads builds only through
jobs.core.store.registry (every file re-hashed against its manifest; a file that does not match is shown as damaged,
never rendered), running builds only through jobs.core.progress, and it presents what the stages wrote with their
own torch-free code (jobs.eval.report and jobs.eval.diagnose: the comparison the terminal prints). Chat goes
through the serve stage's OpenAI-compatible server (jobs.serve.api), loaded in this process on the first chat,
and is the only part that imports torch. tests/test_architecture.py lists exactly these imports as allowed.

data.py what the pages show, read from the store; svg.py loss curves; chat.py the lazily loaded server;
app.py the routes; templates/ and static/ the pages (plain JavaScript, no network, no build step).
"""

from __future__ import annotations

from jobs.core.errors import QslmError


class StudioError(QslmError):
    """A request the studio cannot answer (an unknown tag, a change without --allow-changes...)."""


class Refused(StudioError):
    """A change the studio does not make: read-only, or a request without this page's token or from elsewhere."""
