"""Word documents (.docx, python-docx): headings by their style (Title, Heading 1-9) make the section path;
paragraphs are prose, `Caption`-styled ones captions, tables one block each (cells joined by ` | `, rows by
newlines), in the document's order. Offsets count characters of the text read, block after block.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from jobs.curate.blocks import BadInput, Block

HEADING_STYLE = re.compile(r"^(?:heading|título|titulo)\s*(\d)$", re.I)


def _level(style: str) -> int | None:
    if style.lower() in ("title", "título", "titulo"):
        return 1
    m = HEADING_STYLE.match(style.strip())
    return int(m.group(1)) if m else None


def read(path: Path, data: bytes):
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        return docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise BadInput(path, f"not a readable Word document ({type(exc).__name__}); open it in Word or "
                             f"LibreOffice and save it again as .docx") from None


def parse(path: Path, data: bytes) -> list[Block]:
    from docx.table import Table

    document = read(path, data)
    blocks, section, offset = [], [], 0
    title_seen = False
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = [" | ".join(c.text.strip() for c in row.cells) for row in item.rows]
            text, kind = "\n".join(r for r in rows if r.strip(" |")), "table"
        else:
            text = re.sub(r"[ \t]+", " ", item.text).strip()
            style = item.style.name if item.style is not None else ""
            level = _level(style)
            if level is not None and text:
                if style.lower().startswith(("title", "tít", "tit")):
                    title_seen = True  # the document's title: its headings go beneath it
                elif title_seen:
                    level += 1
                del section[level - 1:]
                section.extend([""] * (level - 1 - len(section)))
                section.append(text)
                section[:] = [t for t in section if t]
                offset += len(text) + 1
                continue
            kind = "caption" if style.lower().startswith(("caption", "descripción", "epígrafe")) else "prose"
        if text:
            blocks.append(Block(tuple(section), kind, text, path, offset, offset + len(text)))
        offset += len(text) + 1
    return blocks
