"""The export's choices and its checks that need nothing installed: the Makefile runs this with the system Python
before it creates the venv or compiles llama.cpp, so a wrong value fails in a second.

    python -m jobs.serve.exportargs --format gguf --quant Q4_K_M     # `make export` runs this first

Standard library only (it runs before the venv exists; jobs.serve's own imports are standard library too). export.py imports the same lists, so the two never differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.serve import ServeError

FORMATS = ("hf", "gguf")
# llama.cpp file types a user may pick (llama_ftype names without LLAMA_FTYPE_MOSTLY_); F16 is the converter's own.
# K-quants (_K) pack 256 weights per block: a tensor whose width is not a multiple of 256 (the smoke model's 64)
# is stored by llama.cpp in a fallback type of about the same size (Q5_0, Q5_1, Q8_0); Qwen2.5's widths all fit.
QUANTS = ("F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_0", "Q3_K_M", "Q2_K")
DEFAULT_QUANT = "Q4_K_M"
GGUF_FROM = ("dequantized", "original")


def problems(fmt: str, quant: str, gguf_from: str) -> list[str]:
    """Every wrong value at once, each with its fix (empty when all are valid)."""
    out = []
    if fmt not in FORMATS:
        out.append(f"FORMAT={fmt} is not an export format; pick one of {', '.join(FORMATS)}")
    if quant.upper() not in QUANTS:
        out.append(f"QUANT={quant} is not a llama.cpp type offered here; pick one of {', '.join(QUANTS)}")
    if gguf_from not in GGUF_FROM:
        out.append(f"--gguf-from {gguf_from}: pick one of {', '.join(GGUF_FROM)}")
    return out


def claim_folder(out: Path | None, default: Path, tag: str) -> tuple[Path, str]:
    """The folder this export writes, made here, and a note when it is not the one asked for.

    An export never deletes or replaces what it did not write: a missing or empty folder is used as it is; one
    that holds anything gets a new subfolder named after the tag (OUT/<tag>, OUT/<tag>-2, ...), or, for the
    default exports/<tag>, a new sibling (exports/<tag>-2, ...). The new folder is made with an exclusive mkdir,
    so two exports at once never share one."""
    asked = out or default
    if asked.exists() and not asked.is_dir():
        raise ServeError(f"OUT={asked} is a file; give a folder (a new one, or an empty one)")
    try:
        if not asked.exists() or not any(asked.iterdir()):
            asked.mkdir(parents=True, exist_ok=True)
            return asked, ""
        parent, stem = (asked, tag) if out is not None else (asked.parent, asked.name)
        for n in range(1, 1000):
            folder = parent / (stem if n == 1 else f"{stem}-{n}")
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            return folder, f"{asked} already holds files; they stay as they are: writing into {folder} (new)"
    except OSError as exc:  # no permission, a read-only disk
        raise ServeError(f"cannot make the export folder under {asked}: {exc.strerror}; give OUT=<a folder you can "
                         f"write>") from None
    raise ServeError(f"{parent} holds {stem} to {stem}-999; give an empty folder: OUT=<dir>")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Check make export's values before anything is installed.")
    p.add_argument("--format", default="hf")
    p.add_argument("--quant", default=DEFAULT_QUANT)
    p.add_argument("--gguf-from", default="dequantized")
    args = p.parse_args(argv)
    found = problems(args.format or "hf", args.quant or DEFAULT_QUANT, args.gguf_from or "dequantized")
    for line in found:
        print(f"export: error: {line}", file=sys.stderr)
    return 2 if found else 0


if __name__ == "__main__":
    sys.exit(main())
