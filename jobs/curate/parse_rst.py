"""reStructuredText (Sphinx): sections by their underline style, directives by name, roles to text.

`:math:` roles become `$...$`, `.. math::` blocks `$$ ... $$`; code directives and `::` literal blocks stay
fenced code; Sphinx machinery (autosummary, currentmodule, toctree, label targets, comments) goes; figures keep
their caption.
"""

from __future__ import annotations

import re
from pathlib import Path
from itertools import accumulate

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


def parse(path: Path, text: str) -> list[Block]:
    lines = text.split("\n")
    offsets = [0, *accumulate(len(line) + 1 for line in lines)]  # char offset of each line's start
    styles: list[tuple[str, bool]] = []  # adornment styles in order of first use = section levels
    section: list[str] = []
    blocks, para, para_start = [], [], 0

    def emit(kind, body, start, stop):
        if body.strip():
            end = offsets[stop - 1] + len(lines[stop - 1]) if stop > 0 else 0
            blocks.append(Block(tuple(section), kind, body, path, offsets[start], end))

    def flush(stop):
        if para:
            rows = []
            for l in para:
                if re.match(r"^\s*([-*+]|\d+[.)]|#\.)\s+", l) or not rows:
                    rows.append(l.strip())
                else:
                    rows[-1] += " " + l.strip()
            joined = "\n".join(inline(r) for r in rows)
            alone = re.fullmatch(r"\$([^$]+)\$([,.;]?)", joined)
            if alone:  # a paragraph that is one :math: role is a display equation
                joined = f"$$\n{alone.group(1).strip()}{alone.group(2)}\n$$"
            emit("prose", joined, para_start, stop)
            para.clear()

    def set_section(title: str, style: tuple[str, bool]):
        if style not in styles:
            styles.append(style)
        level = styles.index(style)
        del section[level:]
        section.append(inline(title))

    i = 0
    while i < len(lines):
        line, s = lines[i], lines[i].strip()
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        # overlined title: ===, Title, ===
        if ADORNMENT.match(line) and i + 2 < len(lines) and lines[i + 2].strip() == s and lines[i + 1].strip():
            flush(i)
            set_section(lines[i + 1].strip(), (s[0], True))
            i += 3
            para_start = i
            continue
        if s and not para and ADORNMENT.match(nxt) and len(nxt.strip()) >= len(s) and not line.startswith(" "):
            flush(i)
            set_section(s, (nxt.strip()[0], False))
            i += 2
            para_start = i
            continue
        d = DIRECTIVE.match(s) if not line.startswith(" ") or not para else None
        if d:
            flush(i)
            name, arg = d.group(1), d.group(2).strip()
            end = _block_end(lines, i, _indent(line))
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
                    emit("code", f"```{lang}\n{code}\n```", i, end)
            elif name == "math":
                emit("prose", "$$\n" + "\n".join(content + ([arg] if arg else [])).strip() + "\n$$", i, end)
            elif name == "figure":
                caption = " ".join(l.strip() for l in content if l.strip())
                if caption:
                    emit("caption", "Figure: " + inline(caption), i, end)
            elif name == "rubric":
                set_section(arg, ("rubric", False))
            elif name in PROSE_DIRECTIVES:
                emit("prose", inline(" ".join([arg] + [l.strip() for l in content if l.strip()])), i, end)
            i = end
            para_start = i
            continue
        if s.startswith(".. "):  # comments and label targets (`.. _name:`)
            flush(i)
            i = _block_end(lines, i, _indent(line))
            para_start = i
            continue
        if not s:
            flush(i)
            i += 1
            para_start = i
            continue
        if not para:
            para_start = i
        para.append(line)
        if s.endswith("::") and (i + 1 >= len(lines) or not lines[i + 1].strip()):
            para[-1] = line.rstrip()[:-1] if not s == "::" else ""
            flush(i + 1)
            end = _block_end(lines, i, _indent(line))
            code = "\n".join(_dedent(lines[i + 1:end])).strip("\n")
            if code.strip():
                emit("code", f"```\n{code}\n```", i + 1, end)
            i = end
            para_start = i
            continue
        i += 1
    flush(len(lines))
    return blocks
