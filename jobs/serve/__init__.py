"""Using a build: ask it, chat with it, serve it over the OpenAI API, export it.

    python -m jobs.serve.ask    --tag smoke -q "What is a quantum kernel?"   # `make ask`
    python -m jobs.serve.api    --tag smoke,v2 --port 8000                   # `make serve`
    python -m jobs.serve.export --tag smoke [--format gguf --quant Q4_K_M]   # `make export`

A build comes from the store (local or S3) into a local cache, checked file by file against its manifest
(builds.py); the model runs through the generation engine (jobs.core.engine), the base loaded exactly as the
build was trained on it. This stage imports jobs.core only.
"""

from __future__ import annotations

from jobs.core.errors import QslmError


class ServeError(QslmError):
    """A build that cannot be used this way (no build given, bases that differ, a bad export option...)."""
