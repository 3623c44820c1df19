"""Kubernetes names for build runs. Standard library only: the push workflow's plan step, inside the curate image,
names the runs it starts with it, and `make submit` names its own."""

from __future__ import annotations

import re

# The stage images' tag when none is given (qslm-<stage>:local): one image set serves every spec of a checkout, since
# the images hold the code and each build mounts its own commit's data/ (`make images VERSION=local` builds it;
# make submit IMAGE_TAG=..., the chart's trigger.imageTag and local-run's --image-tag choose another).
IMAGE_TAG = "local"


def run_name(tag: str, suffix: str) -> str:
    """qslm-<tag as a DNS label part>-<suffix>: also the run-id under runs/ in the store (at most 63 characters)."""
    part = re.sub(r"[^a-z0-9-]", "-", tag.lower())[:40].strip("-")
    return f"qslm-{part}-{suffix}"[:63].rstrip("-")
