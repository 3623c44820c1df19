"""What every parser returns, and how a text document is read: the leaf module that documents.py and the
parsers (parse_tex, parse_md, parse_rst, parse_pdf) share, so none of them imports another in a circle.

Parsers return `Block`s (section path, kind, text, file, char offsets). Bad input (empty, binary, not UTF-8, an
absurdly long line, an unreadable or encrypted PDF) raises `BadInput` naming the file and the fix.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from jobs.core.errors import QslmError

MAX_LINE_CHARS = 50_000  # a longer line is a minified or generated blob, not prose
PARAGRAPH_KINDS = ("prose", "code", "caption", "table")


class CurateError(QslmError):
    """Input the curate stage cannot use; the message names the file and the fix."""


class BadInput(CurateError):
    """One document that cannot be read; skipped or fatal depending on `curate.on_bad_input`."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass(frozen=True)
class Block:
    section: tuple[str, ...]
    kind: str  # one of PARAGRAPH_KINDS
    text: str
    file: Path
    start: int  # char offsets into `file` (for PDF: into the page-joined text after header removal)
    end: int
    page: int = 0  # the 1-based PDF page the block starts on; 0 where the format has no pages


def check_text(path: Path, data: bytes) -> str:
    """Decode a text document, or raise BadInput saying what is wrong and how to fix it."""
    if not data.strip():
        raise BadInput(path, "the file is empty; remove it from the sources or give it content")
    if b"\x00" in data[:65536]:
        raise BadInput(path, f"binary data in a {path.suffix} file (NUL bytes); this is not a text document, "
                             f"remove it from the sources or give it the right extension")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(path, f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); re-save it as "
                             f"UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix}`") from None
    longest, lineno = 0, 0
    for i, line in enumerate(text.splitlines(), 1):
        if len(line) > longest:
            longest, lineno = len(line), i
    if longest > MAX_LINE_CHARS:
        raise BadInput(path, f"line {lineno} is {longest:,} characters long (limit {MAX_LINE_CHARS:,}); this looks "
                             f"like generated or minified data, not prose: remove it from the sources")
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))


def read_text(path: Path) -> tuple[str, bytes]:
    data = path.read_bytes()
    return check_text(path, data), data
