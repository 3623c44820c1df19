"""The fault tier: kill -9 at random points of publish, train, eval and the build driver; publishes racing for one
tag; the S3 endpoint stopped, frozen and restored under a publish. Every test ends by re-hashing every committed
manifest of its stores (`committed` below): the property is that a committed build is never wrong.

Its tests are marked `faults` (select them with `make test-faults`) and `slow` (the fast tier leaves them out;
`make test` runs them). Random points come from random.Random(SEED): set QSLM_FAULT_SEED to replay a run.
The figures (faults injected, races, builds re-hashed, damaged) print at the end of the run, and go to the
JSON file QSLM_FAULT_FIGURES names, if set (docs/reliability.md quotes them).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from tests.faults.harness import FIGURES, SEED, check_committed


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.write_line(f"fault tier (seed {SEED}): " + ", ".join(f"{k} {v}" for k, v in sorted(FIGURES.items())))
    if os.environ.get("QSLM_FAULT_FIGURES"):
        Path(os.environ["QSLM_FAULT_FIGURES"]).write_text(json.dumps({"seed": SEED, **FIGURES}, indent=2) + "\n")


@pytest.fixture
def rng(request) -> random.Random:
    return random.Random(f"{SEED}-{request.node.name}")


@pytest.fixture
def committed():
    """Register stores; each is re-hashed when the test ends."""
    stores = []
    yield stores.append
    for store in stores:
        check_committed(store)
