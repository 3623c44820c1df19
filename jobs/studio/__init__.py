"""The studio: every build in the store, its report, comparisons, a running build and a chat, in one local web
page.

    python -m jobs.studio [--port 8080] [--allow-changes]      # `make studio [PORT=8080] [CHANGES=1]`

An app over the store, not a stage: it runs no build step and has no image. It reads builds only through
jobs.core.store.registry (every file re-hashed against its manifest; a file that does not match is shown as damaged,
never rendered), running builds only through jobs.core.progress, and it presents what the stages wrote with their
own torch-free code (jobs.eval.report and jobs.eval.diagnose: the comparison the terminal prints). Chat goes
through the serve stage's OpenAI-compatible server (jobs.serve.api: the builds, `base`, their retrieval indexes
through jobs.serve.retrieval), loaded in this process on the first chat, and is the only part that imports torch.
tests/test_architecture.py lists exactly these imports as allowed. The review of draft suites (with
--allow-changes) runs `make review`'s code: jobs.core.spec.suite_review and jobs.new.review.

records.py what the pages show, read from the store; svg.py loss curves; conversation.py the lazily loaded
server; drafts.py the draft suites; app.py the routes; templates/ and static/ the pages (plain JavaScript, no
network, no build step).
"""

from __future__ import annotations

from jobs.core.errors import QslmError


class StudioError(QslmError):
    """A request the studio cannot answer (an unknown tag, a change without --allow-changes...)."""


class Refused(StudioError):
    """A change the studio does not make: read-only, or a request without this page's token or from elsewhere."""
