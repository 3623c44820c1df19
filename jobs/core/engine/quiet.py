"""Library noise kept off the terminal: each message below is printed on every run, says nothing about this
build, and would bury the lines that do. Only these are hidden; every other warning still shows.

  - bitsandbytes on a CPU: "Failed to load CPU gemm_4bit_forward from kernels-community" at import: an optional
    faster kernel package is absent and the built-in kernel is used (the same results).
  - transformers' "Loading weights" progress bars (one per model load; a tiny model loads in under a second).
  - transformers' FutureWarnings that `is_gradient_checkpointing` and `gradient_checkpointing_enable` are renamed
    (peft and train call the old names, which transformers 5 still serves).
"""

from __future__ import annotations

import logging
import os
import warnings

WARNINGS = ((FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
            (FutureWarning, r"`gradient_checkpointing_enable` is deprecated"))


def quiet() -> None:
    """Call before transformers is imported (the progress-bar setting is read at its import)."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for category, message in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
