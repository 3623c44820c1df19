"""HTML pages (.html, .htm; beautifulsoup4 with lxml): h1-h6 make the section path; p, li, dd, blockquote are
prose, figcaption and caption captions, pre code, a table one block (cells joined by ` | `). Scripts, styles,
navigation, headers, footers and asides are not the page's content and go. An element inside another that is
read whole (a p in a li, anything in a table or pre) is not read twice. Offsets count characters of the text
read, block after block.
"""

from __future__ import annotations

import re
from pathlib import Path

from jobs.curate.blocks import Block

HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
KINDS = {"p": "prose", "li": "prose", "dd": "prose", "blockquote": "prose", "figcaption": "caption",
         "caption": "caption", "pre": "code", "table": "table"}
NOT_CONTENT = ("script", "style", "noscript", "nav", "header", "footer", "aside", "template", "svg", "form")


def _text(el) -> str:
    return re.sub(r"\s+", " ", el.get_text(" ")).strip()


def _table(el) -> str:
    rows = [" | ".join(_text(c) for c in tr.find_all(["th", "td"])) for tr in el.find_all("tr")]
    return "\n".join(r for r in rows if r.strip(" |"))


def parse(path: Path, text: str) -> list[Block]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "lxml")
    for el in soup.find_all(NOT_CONTENT):
        el.decompose()
    root = soup.body or soup
    blocks, section, offset = [], [], 0
    wanted = HEADINGS + tuple(KINDS)
    for el in root.find_all(wanted):
        if any(parent.name in KINDS for parent in el.parents if parent is not root):
            continue  # read with the element that holds it
        if el.name in HEADINGS:
            title = _text(el)
            if title:
                level = int(el.name[1])
                del section[level - 1:]
                section.extend([""] * (level - 1 - len(section)))
                section.append(title)
                section[:] = [t for t in section if t]
                offset += len(title) + 1
            continue
        kind = KINDS[el.name]
        body = _table(el) if kind == "table" else el.get_text().strip("\n") if kind == "code" else _text(el)
        if body.strip():
            blocks.append(Block(tuple(section), kind, body, path, offset, offset + len(body)))
            offset += len(body) + 1
    return blocks
