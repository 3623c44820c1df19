"""Kubernetes names for build runs. Standard library only: the push workflow's plan step, inside the curate image,
names the runs it starts with it, and `make submit` names its own."""

from __future__ import annotations

import re


def run_name(tag: str, suffix: str) -> str:
    """qslm-<tag as a DNS label part>-<suffix>: also the run-id under runs/ in the store (at most 63 characters)."""
    part = re.sub(r"[^a-z0-9-]", "-", tag.lower())[:40].strip("-")
    return f"qslm-{part}-{suffix}"[:63].rstrip("-")
