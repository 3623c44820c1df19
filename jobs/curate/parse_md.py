"""Markdown, MyST (jupytext notebooks, Jupyter Book) and MkDocs pages, and plain text.

Front matter, `+++` cell markers, `(label)=` anchors, comments and directives go; `{code-cell}` and fenced code
stay fenced code (a `#` comment inside code is never a heading); `{math}` and `$$` blocks stay display math;
roles become their text (`{doc}`/`{ref}`), inline math (`{math}`) or nothing (`{cite}`, `{eq}`);
`{figure}`/`{image}` keep only their caption; `$\\newcommand` math macros are expanded. MkDocs: images go (the
text around them is the caption), `:emoji:` shortcodes go, `!!! note "Title"` admonitions are read as prose;
CommonMark indented code blocks are code.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

from jobs.curate import tex_macros
from jobs.curate.blocks import Block

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,}|:{3,})\s*(\{([\w:-]+)\})?\s*(.*)$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_DIRECTIVES = {"code-cell", "code-block", "code", "sourcecode", "literalinclude", "jupyter-execute"}
PROSE_DIRECTIVES = {"note", "warning", "tip", "important", "hint", "seealso", "admonition", "attention",
                    "caution", "danger", "error", "exercise", "solution", "proof", "prf:definition",
                    "prf:theorem", "definition", "theorem", "margin", "sidebar", "epigraph", "topic", "dropdown"}
CAPTION_DIRECTIVES = {"figure", "table", "list-table"}
LANG_ALIASES = {"ipython3": "python", "ipython": "python", "python3": "python", "py": "python"}


INDENTED = re.compile(r"^(    |\t)\s*\S")
LIST_ITEM = re.compile(r"^\s*([-*+]|\d+[.)])\s+\S")
PROTECTED = re.compile(r"(?<![\\`])\$[^$\n]+?\$|(?<![`}])`[^`\n]+`")


def inline(text: str) -> str:
    """Inline Markdown/MyST to text: math and `code` kept, links/roles/images/HTML/emoji reduced to words."""
    text = _roles(text)
    pieces, pos = [], 0
    for m in PROTECTED.finditer(text):
        pieces.append(_markup(text[pos:m.start()]) + m.group(0))
        pos = m.end()
    return re.sub(r"[ \t]+", " ", "".join(pieces) + _markup(text[pos:])).strip()


def _roles(text: str) -> str:
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)(\{[^}]*\})?", "", text)  # images (the caption is the text around them)
    text = re.sub(r"\b(Eqs?\.|Equations?)\s*\{eq\}`[^`]*`", "the equation", text)
    text = re.sub(r"\{(cite|cite:p|cite:t|footcite|eq|numref|download|abbr)\}`[^`]*`", "", text)
    text = re.sub(r"\{math\}`([^`]*)`", r"$\1$", text)
    text = re.sub(r"\{[\w:-]+\}`([^`<]*?)\s*<[^`>]*>`", r"\1", text)  # {doc}`text <target>`
    text = re.sub(r"\{(?:doc|ref|term|abbr|index|sub-ref|py:\w+|func|class|meth|mod)\}`~?([^`]*)`", r"\1", text)
    text = re.sub(r"\{[\w:-]+\}`([^`]*)`", r"\1", text)
    return text


def _markup(text: str) -> str:
    text = re.sub(r"\[([^\]]+)\]\((?:[^()]|\([^)]*\))*\)", r"\1", text)  # links keep their text
    text = re.sub(r"\[([^\]]+)\]\[[^\]]*\]", r"\1", text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<br\s*/?>", " ", text)
    text = re.sub(r"</?[A-Za-z][^>]*>", "", text)
    text = re.sub(r"(?<![\w`$]):[a-z0-9_+-]+:(?![\w`])", "", text)  # :rocket: shortcodes
    return re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)


def _join(lines: list[str]) -> str:
    """Join a paragraph's lines; list items, table rows and display math keep their own lines."""
    out, buf, in_math = [], [], False
    for line in lines:
        s = line.strip()
        if s.startswith("$$") and s.endswith("$$") and len(s) > 4 and not in_math:  # $$ x $$ on one line
            if buf:
                out.append(inline(" ".join(buf)))
                buf = []
            out += ["$$", s[2:-2].strip(), "$$"]
        elif s.startswith("$$") and (s == "$$" or not s.endswith("$$") or len(s) == 2):
            if buf:
                out.append(inline(" ".join(buf)))
                buf = []
            out.append("$$")
            if len(s) > 2:
                out.append(s[2:])
            in_math = not in_math
        elif in_math:
            out.append(line.rstrip())
        elif re.match(r"^([-*+]|\d+[.)])\s+|^\|", s):
            if buf:
                out.append(inline(" ".join(buf)))
            buf = [s]
        elif s:
            buf.append(s.lstrip("> ").strip() if s.startswith(">") else s)
    if buf:
        out.append(inline(" ".join(buf)))
    return "\n".join(l for l in out if l.strip())


def _directive_body(lines: list[str]) -> tuple[list[str], dict]:
    """Split a directive's body from its options (`:key: value` lines or a `---` YAML block)."""
    options, i = {}, 0
    if lines and lines[0].strip() == "---":
        end = next((k for k in range(1, len(lines)) if lines[k].strip() == "---"), 0)
        i = end + 1
    while i < len(lines) and re.match(r"^\s*:[\w-]+:", lines[i]):
        key, _, value = lines[i].strip()[1:].partition(":")
        options[key] = value.strip()
        i += 1
    return lines[i:], options


@dataclass
class _Page:
    """The parser's state while it walks one page's lines: the blocks so far, the open paragraph, the section."""

    path: Path
    lines: list[str]
    offsets: list[int]  # char offset of each line's start
    blocks: list[Block] = field(default_factory=list)
    section: list[str] = field(default_factory=list)
    levels: list[tuple[int, str]] = field(default_factory=list)
    para: list[str] = field(default_factory=list)
    para_start: int = 0
    continuation: bool = False  # indented lines continue a list item or an admonition, they are not code

    def emit(self, kind: str, body: str, start: int, stop: int) -> None:
        if body.strip():
            end = self.offsets[stop - 1] + len(self.lines[stop - 1])
            self.blocks.append(Block(tuple(self.section), kind, body, self.path, self.offsets[start], end))

    def flush(self, stop: int) -> None:
        if self.para:
            table = all(l.lstrip().startswith("|") for l in self.para if l.strip())
            self.emit("table" if table else "prose", _join(self.para), self.para_start, stop)
            self.para.clear()


def _fenced(page: _Page, i: int, fence: re.Match) -> int:
    """A fenced block or MyST directive at line i: code, math, a caption or admonition prose. Returns the
    line after it."""
    lines = page.lines
    page.flush(i)
    marker, name, info = fence.group(2), (fence.group(4) or ""), fence.group(5).strip()
    end = next((k for k in range(i + 1, len(lines)) if lines[k].strip().startswith(marker[0] * len(marker))
                and lines[k].strip().strip(marker[0]) == ""), len(lines))
    body, options = _directive_body(lines[i + 1:end]) if name else (lines[i + 1:end], {})
    stop = min(end + 1, len(lines))
    if not name or name in CODE_DIRECTIVES:
        lang = LANG_ALIASES.get((info or options.get("language", "")).split(" ")[0], info.split(" ")[0])
        code = "\n".join(body).strip("\n")
        if name != "literalinclude" and code.strip():
            page.emit("code", f"```{lang}\n{code}\n```", i, stop)
    elif name == "math":
        page.emit("prose", "$$\n" + "\n".join(body).strip() + "\n$$", i, stop)
    elif name in CAPTION_DIRECTIVES or name in ("image",):
        caption = _join(body) if name != "image" else ""
        if caption:
            page.emit("caption", "Figure: " + caption, i, stop)
    elif name in PROSE_DIRECTIVES or name.startswith(("admonition", "prf:")):
        joined = _join(body)
        if joined:
            page.emit("prose", (info + ": " if info else "") + joined, i, stop)
    page.para_start = end + 1
    return end + 1


def _heading(page: _Page, i: int, heading: re.Match) -> int:
    page.flush(i)
    level, title = len(heading.group(1)), inline(heading.group(2))
    page.levels = [lv for lv in page.levels if lv[0] < level] + [(level, title)]
    page.section[:] = [t for _, t in page.levels]
    page.continuation = False
    page.para_start = i + 1
    return i + 1


def _display_math(page: _Page, i: int) -> int:
    """A $$ block that may hold blank lines: taken whole into the open paragraph."""
    lines = page.lines
    end = next((k for k in range(i + 1, len(lines)) if "$$" in lines[k]), len(lines) - 1)
    if not page.para:
        page.para_start = i
    page.para.extend(lines[i:end + 1])
    return end + 1


def _indented_code(page: _Page, i: int) -> int:
    """A CommonMark indented code block: only after a blank line, and not a list item's continuation."""
    lines = page.lines
    end = i
    while end < len(lines) and (INDENTED.match(lines[end]) or not lines[end].strip()):
        end += 1
    while not lines[end - 1].strip():
        end -= 1
    code = "\n".join(l[4:] if l.startswith("    ") else l.lstrip("\t") for l in lines[i:end])
    page.emit("code", f"```\n{code}\n```", i, end)
    page.para_start = end
    return end


def _skipped(s: str) -> bool:
    """Blank lines, jupytext `+++` cell markers, `(label)=` anchors and comments end a paragraph."""
    return (not s or s.startswith("+++") or bool(re.match(r"^\([\w:.-]+\)=\s*$", s)) or s.startswith("% ")
            or bool(re.match(r"^<!--.*-->$", s)))


def parse(path: Path, text: str) -> list[Block]:
    lines = text.split("\n")
    page = _Page(path, lines, [0, *accumulate(len(line) + 1 for line in lines)])
    macros: dict = {}
    i = 0
    if lines and lines[0].strip() == "---":  # YAML front matter
        end = next((k for k in range(1, len(lines)) if lines[k].strip() in ("---", "...")), None)
        if end is not None:
            i = end + 1
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        fence = FENCE.match(line)
        heading = HEADING.match(line) if not line.startswith((" ", "\t")) else None
        if fence and (fence.group(2)[0] != ":" or fence.group(4)):
            i = _fenced(page, i, fence)
            continue
        if heading:
            i = _heading(page, i, heading)
            continue
        if s.startswith("$$") and not (len(s) > 4 and s.endswith("$$")):
            i = _display_math(page, i)
            continue
        admonition = re.match(r'^(?:!!!|\?\?\?\+?)\s*[\w-]+(?:\s+"([^"]*)")?\s*$', s)
        if admonition:  # MkDocs `!!! note "Title"`: the title leads the indented body, read as prose
            page.flush(i)
            page.para_start = i
            page.continuation = True
            s = admonition.group(1) or ""
            line = s + ":" if s else ""
            if not s:
                i += 1
                continue
        if re.match(r"^\$\\(re)?newcommand", s):  # MyST math macros: expanded below, then dropped
            macros.update(tex_macros.collect_macros(s))
            s = ""
        if _skipped(s):
            page.flush(i)
            i += 1
            page.para_start = i
            continue
        if not page.para and INDENTED.match(line) and not page.continuation:
            i = _indented_code(page, i)
            continue
        if not page.para:
            page.para_start = i
        page.para.append(line)
        page.continuation = bool(LIST_ITEM.match(line)) or (page.continuation and line.startswith((" ", "\t")))
        i += 1
    page.flush(len(lines))
    if macros:
        return [b if b.kind == "code" else dataclasses.replace(b, text=tex_macros.expand(b.text, macros))
                for b in page.blocks]
    return page.blocks


def parse_plain(path: Path, text: str) -> list[Block]:
    """Plain text: paragraphs separated by blank lines, one section."""
    blocks, start = [], 0
    for m in re.finditer(r"(?:[^\n]+\n?)+", text):
        body = " ".join(l.strip() for l in m.group(0).split("\n") if l.strip())
        if body:
            blocks.append(Block((), "prose", body, path, m.start(), m.end()))
        start = m.end()
    return blocks
