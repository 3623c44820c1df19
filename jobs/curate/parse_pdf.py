"""Text-based PDF (pypdf): running headers, footers and page numbers removed, hyphenated line breaks joined.

PDF text has no paragraph marks: a line that ends a sentence and is clearly shorter than the text width ends
a paragraph. Headings are numbered lines ("3.2. Covariant Quantum Kernels"), a chapter number alone at the top
of a page followed by its title, or a short title line opening a page. Offsets are into the text that remains
after header/footer removal (pages joined by newlines).
"""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

from jobs.curate.blocks import BadInput, Block

ROMAN = re.compile(r"^[ivxlcdm]+$", re.I)
NUMBERED_HEADING = re.compile(r"^(\d+(?:\.\d+)+)\.?\s+([A-ZÁÉÍÓÚÑÜ¿¡].{1,80})$")
CAPTION = re.compile(r"^(Figura|Figure|Fig\.|Tabla|Table|Cuadro)\s+\d+(\.\d+)*[:.]")
DOT_LEADER = re.compile(r"(\.\s?){4,}\s*\S*$")


def read_pages(path: Path, data: bytes) -> list[str]:
    import pypdf

    if not data.strip():
        raise BadInput(path, "the file is empty; remove it from the sources or replace it with the real PDF")
    if not data.lstrip()[:5] == b"%PDF-":
        raise BadInput(path, "not a PDF (no %PDF- header); give it the right extension or remove it")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except Exception:  # noqa: BLE001 - any decryption failure means the same thing to the user
                ok = 0
            if not ok:
                raise BadInput(path, "the PDF is encrypted with a password; decrypt it first "
                                     "(`qpdf --decrypt --password=... in.pdf out.pdf`) or remove it")
        pages = [p.extract_text() or "" for p in reader.pages]
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types for broken files
        raise BadInput(path, f"unreadable PDF ({type(exc).__name__}: {str(exc)[:160]}); re-export it or "
                             f"remove it") from None
    if not any(p.strip() for p in pages):
        raise BadInput(path, f"no text layer in {len(pages)} page(s) (a scanned PDF?); run OCR on it first "
                             f"(e.g. `ocrmypdf in.pdf out.pdf`) or remove it")
    return pages


def _norm(line: str) -> str:
    return re.sub(r"\d+", "#", " ".join(w for w in line.lower().split() if not ROMAN.match(w))).strip()


def _is_page_furniture(line: str, counts: Counter, page_no: int | None) -> bool:
    s = line.strip()
    if not s:
        return True
    if s.isdigit() or ROMAN.match(s):
        return page_no is None or not s.isdigit() or int(s) == page_no
    m = re.match(r"^(\d+|[ivxlcdm]+)\s+(.+)$|^(.+?)\s+(\d+|[ivxlcdm]+)$", s, re.I)
    if m:  # "20 CAPÍTULO 4. DESARROLLO", "CAPÍTULO 1. INTRODUCCIÓN 3", "vi ÍNDICE GENERAL"
        rest = m.group(2) or m.group(3)
        if rest.upper() == rest and re.search(r"[A-ZÁÉÍÓÚÑ]{3}", rest):
            return True
    return counts[_norm(s)] >= 3


def strip_furniture(pages: list[str]) -> list[list[str]]:
    """Each page's lines without running headers/footers and page numbers."""
    # Control characters are glyphs of big delimiters in flattened math: they carry nothing readable.
    pages = [re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", p) for p in pages]
    lines = [[l for l in p.split("\n") if l.strip()] for p in pages]
    counts = Counter()
    for page in lines:
        edge = page[:2] + page[-2:] if len(page) > 4 else page
        counts.update({_norm(l) for l in edge if l.strip()})
    # printed page number = page index + offset (front matter in roman numerals is handled separately)
    offsets = Counter(int(p[-1].strip()) - i for i, p in enumerate(lines) if p and p[-1].strip().isdigit())
    offset = offsets.most_common(1)[0][0] if offsets else None
    out = []
    for i, page in enumerate(lines):
        page_no = i + offset if offset is not None else None
        page = list(page)
        for _ in range(2):
            if page and _is_page_furniture(page[-1], counts, page_no):
                page.pop()
        for _ in range(2):
            if not page:
                break
            first = page[0].strip()
            if first.isdigit() and page_no is not None and int(first) != page_no:
                break  # a chapter number, not a page number
            if _is_page_furniture(page[0], counts, page_no):
                page.pop(0)
        out.append([l.rstrip() for l in page if not DOT_LEADER.search(l.strip())])
    return out


def parse(path: Path, data: bytes) -> list[Block]:
    pages = strip_furniture(read_pages(path, data))
    lengths = sorted(len(l) for p in pages for l in p if l.strip())
    width = lengths[int(len(lengths) * 0.9)] if lengths else 80  # a full line, in characters
    blocks, section, para, kind = [], [], [], "prose"
    text_len = 0
    para_start, para_page = 0, 1

    def flush():
        nonlocal para
        if para:
            blocks.append(Block(tuple(section), kind, " ".join(para), path, para_start, text_len, para_page))
        para = []

    for page_index, page in enumerate(pages):
        for k, line in enumerate(page):
            s = line.strip()
            start = text_len
            text_len += len(line) + 1
            if not s:
                continue
            nxt = page[k + 1].strip() if k + 1 < len(page) else ""
            heading = None
            if k == 0 and s.isdigit() and int(s) < 50 and len(nxt) < 60 and re.match(r"^[A-ZÁÉÍÓÚÑ][^\W\d_]{2}", nxt):
                heading = (1, f"{s}. {nxt}")  # chapter number alone on top, its title on the next line
                page[k + 1] = ""
            elif NUMBERED_HEADING.match(s) and not s.endswith((".", ",", ";", ":")) and len(s) < width * 0.8:
                heading = (s.split()[0].rstrip(".").count(".") + 1, s)
            elif k == 0 and len(s) <= 40 and not re.search(r"[\d.,;:]$", s) and s[0].isupper() and len(nxt) > len(s):
                heading = (1, s)
            if heading:
                flush()
                level, title = heading
                del section[level - 1:]
                section.extend([""] * (level - 1 - len(section)))
                section.append(title)
                section[:] = [t for t in section if t]
                continue
            if CAPTION.match(s):
                flush()
                kind = "caption"
            if not para:
                para_start, para_page = start, page_index + 1
            if para and para[-1].endswith("-") and re.match(r"^[a-záéíóúñü]", s) and re.search(r"\w-$", para[-1]):
                para[-1] = para[-1][:-1] + s  # a word hyphenated across lines
            else:
                para.append(s)
            if s.endswith((".", "!", "?", ":")) and len(line) < width * 0.85:
                flush()
                kind = "prose"
    flush()
    return blocks
