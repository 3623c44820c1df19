"""reStructuredText (Sphinx): sections by their underline style, directives by name, roles to text.

`:math:` roles become `$...$`, `.. math::` blocks `$$ ... $$`; code directives and `::` literal blocks stay
fenced code; Sphinx machinery (autosummary, currentmodule, toctree, label targets, comments) goes; figures keep
their caption.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

from jobs.curate.blocks import Block

ADORNMENT = re.compile(r"^([=\-~#*^\"+`'.:_])\1{2,}\s*$")
DIRECTIVE = re.compile(r"^\.\.\s+([\w:-]+)::\s*(.*)$")
CODE_DIRECTIVES = {"code-block", "code", "sourcecode", "jupyter-execute", "ipython", "doctest", "testcode",
                   "plot"}
PROSE_DIRECTIVES = {"note", "warning", "tip", "important", "hint", "seealso", "admonition", "attention",
                    "caution", "danger", "error", "topic", "sidebar", "epigraph", "versionadded",
                    "versionchanged", "deprecated"}


def inline(text: str) -> str:
    text = text.replace("\\ ", "")  # an escaped space joins inline markup to the next word
    text = re.sub(r":math:`([^`]*)`", lambda m: f"${m.group(1)}$", text)
    text = re.sub(r":(?:cite|footcite|eq|numref)(?::\w+)?:`[^`]*`", "", text)
    text = re.sub(r":[\w:-]+:`([^`<]*?)\s*<[^`>]*>`", r"\1", text)  # :ref:`text <target>`
    text = re.sub(r":[\w:-]+:`~?([^`]*)`", lambda m: "`" + m.group(1).split(".")[-1] + "`", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    text = re.sub(r"`([^`<]+?)\s*<[^`>]+>`__?", r"\1", text)  # `text <url>`_
    text = re.sub(r"`([^`]+)`_\b", r"\1", text)
    text = re.sub(r"\[(\d+|#\w*|\*)\]_", "", text)  # footnote references
    text = re.sub(r"(?<![\w`$])\*\*([^*]+)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w`$*])\*([^*\s][^*]*)\*(?!\*)", r"\1", text)
    return re.sub(r"[ \t]+", " ", text).strip()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block_end(lines: list[str], i: int, base: int) -> int:
    """Index after the indented body that starts after line i (lines indented more than `base`)."""
    j = i + 1
    while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
        j += 1
    while j > i + 1 and not lines[j - 1].strip():
        j -= 1
    return j


def _dedent(lines: list[str]) -> list[str]:
    width = min((_indent(l) for l in lines if l.strip()), default=0)
    return [l[width:] for l in lines]


@dataclass
class _Page:
    """The parser's state while it walks one page's lines: the blocks so far, the open paragraph, the section."""

    path: Path
    lines: list[str]
    offsets: list[int]  # char offset of each line's start
    blocks: list[Block] = field(default_factory=list)
    section: list[str] = field(default_factory=list)
    styles: list[tuple[str, bool]] = field(default_factory=list)  # adornments in order of first use = levels
    para: list[str] = field(default_factory=list)
    para_start: int = 0

    def emit(self, kind: str, body: str, start: int, stop: int) -> None:
        if body.strip():
            end = self.offsets[stop - 1] + len(self.lines[stop - 1])
            self.blocks.append(Block(tuple(self.section), kind, body, self.path, self.offsets[start], end))

    def flush(self, stop: int) -> None:
        if not self.para:
            return
        rows = []
        for l in self.para:
            if re.match(r"^\s*([-*+]|\d+[.)]|#\.)\s+", l) or not rows:
                rows.append(l.strip())
            else:
                rows[-1] += " " + l.strip()
        joined = "\n".join(inline(r) for r in rows)
        alone = re.fullmatch(r"\$([^$]+)\$([,.;]?)", joined)
        if alone:  # a paragraph that is one :math: role is a display equation
            joined = f"$$\n{alone.group(1).strip()}{alone.group(2)}\n$$"
        self.emit("prose", joined, self.para_start, stop)
        self.para.clear()

    def set_section(self, title: str, style: tuple[str, bool]) -> None:
        if style not in self.styles:
            self.styles.append(style)
        del self.section[self.styles.index(style):]
        self.section.append(inline(title))


def _directive(page: _Page, i: int, d: re.Match) -> int:
    """`.. name:: arg` and its indented body at line i: code, math, a caption, a rubric or prose. Returns the
    line after it."""
    lines = page.lines
    page.flush(i)
    name, arg = d.group(1), d.group(2).strip()
    end = _block_end(lines, i, _indent(lines[i]))
    body = _dedent(lines[i + 1:end])
    options = [l for l in body if re.match(r"^:[\w-]+:", l)]
    content = [l for l in body if l not in options]
    while content and not content[0].strip():
        content.pop(0)
    if name in CODE_DIRECTIVES:
        lang = arg.split()[0] if arg else ("python" if name in ("jupyter-execute", "ipython", "doctest",
                                                                "testcode") else "")
        code = "\n".join(content).strip("\n")
        if code.strip():
            page.emit("code", f"```{lang}\n{code}\n```", i, end)
    elif name == "math":
        page.emit("prose", "$$\n" + "\n".join(content + ([arg] if arg else [])).strip() + "\n$$", i, end)
    elif name == "figure":
        caption = " ".join(l.strip() for l in content if l.strip())
        if caption:
            page.emit("caption", "Figure: " + inline(caption), i, end)
    elif name == "rubric":
        page.set_section(arg, ("rubric", False))
    elif name in PROSE_DIRECTIVES:
        page.emit("prose", inline(" ".join([arg] + [l.strip() for l in content if l.strip()])), i, end)
    page.para_start = end
    return end


def _literal_block(page: _Page, i: int) -> int:
    """A paragraph line ending in `::` followed by a blank line: the indented block after it is code."""
    lines, line, s = page.lines, page.lines[i], page.lines[i].strip()
    page.para[-1] = line.rstrip()[:-1] if not s == "::" else ""
    page.flush(i + 1)
    end = _block_end(lines, i, _indent(line))
    code = "\n".join(_dedent(lines[i + 1:end])).strip("\n")
    if code.strip():
        page.emit("code", f"```\n{code}\n```", i + 1, end)
    page.para_start = end
    return end


def _title(page: _Page, i: int) -> int | None:
    """A section title at line i (overlined ===/Title/=== or underlined Title/===): the line after it, else None."""
    lines, line, s = page.lines, page.lines[i], page.lines[i].strip()
    nxt = lines[i + 1] if i + 1 < len(lines) else ""
    if ADORNMENT.match(line) and i + 2 < len(lines) and lines[i + 2].strip() == s and lines[i + 1].strip():
        page.flush(i)
        page.set_section(lines[i + 1].strip(), (s[0], True))
        return i + 3
    if s and not page.para and ADORNMENT.match(nxt) and len(nxt.strip()) >= len(s) and not line.startswith(" "):
        page.flush(i)
        page.set_section(s, (nxt.strip()[0], False))
        return i + 2
    return None


def parse(path: Path, text: str) -> list[Block]:
    lines = text.split("\n")
    page = _Page(path, lines, [0, *accumulate(len(line) + 1 for line in lines)])
    i = 0
    while i < len(lines):
        line, s = lines[i], lines[i].strip()
        after_title = _title(page, i)
        if after_title is not None:
            i = page.para_start = after_title
            continue
        d = DIRECTIVE.match(s) if not line.startswith(" ") or not page.para else None
        if d:
            i = _directive(page, i, d)
            continue
        if s.startswith(".. ") or not s:  # comments and label targets (`.. _name:`), blank lines
            page.flush(i)
            i = _block_end(lines, i, _indent(line)) if s else i + 1
            page.para_start = i
            continue
        if not page.para:
            page.para_start = i
        page.para.append(line)
        if s.endswith("::") and (i + 1 >= len(lines) or not lines[i + 1].strip()):
            i = _literal_block(page, i)
            continue
        i += 1
    page.flush(len(lines))
    return page.blocks
