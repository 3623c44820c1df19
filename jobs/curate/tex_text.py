"""LaTeX to text: user macros, environments and inline commands; math stays LaTeX between $ or $$.

`convert(block)` returns [(kind, text)] parts: prose (with display equations as `$$ ... $$` lines and list items
as `- ...` lines), code (fenced), caption ("Figure: ...") and table (cells joined by " | ").
"""

from __future__ import annotations

import re
import unicodedata

from jobs.curate.tex_macros import brace_arg

MATH_ENVS = {"equation", "align", "gather", "multline", "eqnarray", "displaymath", "flalign", "alignat", "math"}
CODE_ENVS = {"lstlisting", "verbatim", "Verbatim", "minted", "algorithmic", "algorithm"}
FLOAT_ENVS = {"figure", "table", "wrapfigure", "subfigure", "SCfigure"}
DROP_ENVS = {"tikzpicture", "picture", "thebibliography", "comment", "filecontents", "titlepage", "pgfpicture"}
LIST_ENVS = {"itemize", "enumerate", "description"}
# Commands whose arguments are layout or metadata, never prose: dropped with all their brace arguments.
DROP_CMDS = {
    "label", "index", "hypertarget", "vspace", "hspace", "phantomsection", "bibliography", "bibliographystyle",
    "addcontentsline", "setlength", "newpage", "clearpage", "maketitle", "tableofcontents", "centering",
    "noindent", "includegraphics", "definecolor", "color", "usetikzlibrary", "lstset", "hypersetup",
    "titleformat", "numberwithin", "setcounter", "title", "author", "affiliation", "email", "date", "keywords",
    "thanks", "address", "pagestyle", "thispagestyle", "usepackage", "documentclass", "graphicspath",
    "lstdefinestyle", "UseRawInputEncoding", "small", "footnotesize", "tiny", "large", "Large", "normalsize",
    "bfseries", "itshape", "ttfamily", "medskip", "bigskip", "smallskip", "linebreak", "pagebreak", "item",
    "toprule", "midrule", "bottomrule", "hline", "cline", "caption", "subcaption", "protect", "nocite",
    "newline", "par", "appendix", "begin", "end", "frontmatter", "mainmatter", "backmatter", "printbibliography",
}
# Brace arguments a command takes (default 1), so `\\color{red}{text}` keeps `text`.
ARGS = {"definecolor": 3, "href": 2, "textcolor": 2, "colorbox": 2, "Colorbox": 2, "fcolorbox": 3,
        "Fcolorbox": 3, "setcounter": 2, "newcounter": 1, "lstdefinestyle": 2, "foreignlanguage": 2,
        "setlength": 2, "addcontentsline": 3, "titleformat": 5, "parbox": 2, "raisebox": 2, "resizebox": 3,
        "scalebox": 2, "rule": 2, "multicolumn": 3, "multirow": 3, "makebox": 1, "numberwithin": 2,
        "maketitle": 0, "tableofcontents": 0, "centering": 0, "noindent": 0, "item": 0, "newpage": 0,
        "clearpage": 0, "par": 0, "appendix": 0, "toprule": 0, "midrule": 0, "bottomrule": 0, "hline": 0,
        "ldots": 0, "dots": 0, "quad": 0, "qquad": 0, "hfill": 0, "newline": 0, "LaTeX": 0, "TeX": 0,
        "small": 0, "footnotesize": 0, "tiny": 0, "large": 0, "Large": 0, "normalsize": 0, "bfseries": 0,
        "itshape": 0, "ttfamily": 0, "medskip": 0, "bigskip": 0, "smallskip": 0, "protect": 0, "S": 0,
        "phantomsection": 0, "UseRawInputEncoding": 0, "linebreak": 0, "pagebreak": 0}
REF_WORDS = {"fig": "the figure", "figure": "the figure", "eq": "the equation", "eqs": "the equations",
             "equation": "the equation", "table": "the table", "tab": "the table", "sec": "the section",
             "section": "the section", "chapter": "the chapter", "appendix": "the appendix"}
ACCENTS = {"'": "\u0301", '"': "\u0308", "`": "\u0300", "^": "\u0302", "~": "\u0303", "=": "\u0304",
           ".": "\u0307", "c": "\u0327", "v": "\u030c", "u": "\u0306", "H": "\u030b"}
MATH = re.compile(r"\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)|(?<!\\)\$(?:\\.|[^$\\])+\$", re.S)
def find_env_end(text: str, name: str, start: int) -> tuple[int, int]:
    """(start of the matching \\end{name}, index after it); nested environments of the same name count."""
    pattern = re.compile(r"\\(begin|end)\s*\{" + re.escape(name) + r"\}")
    depth = 1
    for m in pattern.finditer(text, start):
        depth += 1 if m.group(1) == "begin" else -1
        if depth == 0:
            return m.start(), m.end()
    return len(text), len(text)


def _skip_options(text: str, i: int) -> int:
    """Skip [..] and, for minted/subfigure-like envs, leading {..} arguments are handled by the caller."""
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "[":
        close = text.find("]", i)
        return close + 1 if close != -1 else i
    return i


def convert(text: str) -> list[tuple[str, str]]:
    """A raw LaTeX block as [(kind, text)] parts, in order."""
    parts: list[tuple[str, str]] = []
    prose: list[str] = []

    def flush():
        joined = to_text("".join(prose))
        if joined.strip():
            parts.append(("prose", joined))
        prose.clear()

    begin = re.compile(r"\\begin\s*\{([^}]+)\}|\\\[")
    inline_math = [(m.start(), m.end()) for m in MATH.finditer(text) if not m.group(0).startswith(("$$", "\\["))]
    pos = 0
    for m in begin.finditer(text):
        if m.start() < pos or any(a < m.start() < b for a, b in inline_math):
            continue
        prose.append(text[pos:m.start()])
        if m.group(0) == "\\[":
            close = text.find("\\]", m.end())
            close = len(text) if close == -1 else close
            prose.append(display_math(text[m.end():close], None))
            pos = close + 2
            continue
        name = m.group(1).strip()
        base = name.rstrip("*")
        inner_start = _skip_options(text, m.end())
        end_start, pos = find_env_end(text, name, m.end())
        inner = text[inner_start:end_start]
        if base in MATH_ENVS:
            prose.append(display_math(inner, base))
        elif base in CODE_ENVS:
            lang = "python" if base == "lstlisting" else ""
            opt = re.match(r"\s*\[([^\]]*)\]", text[m.end():inner_start])
            if opt and re.search(r"language\s*=\s*(\w+)", opt.group(1)):
                lang = re.search(r"language\s*=\s*(\w+)", opt.group(1)).group(1).lower()
            if base == "minted":
                lang, after = brace_arg(inner, inner.index("{")) if "{" in inner[:5] else ("", 0)
                inner = inner[after:]
            flush()
            code = inner.strip("\n").rstrip()
            if code.strip():
                parts.append(("code", f"```{lang}\n{code}\n```"))
        elif base in DROP_ENVS:
            continue
        elif base in FLOAT_ENVS:
            flush()
            for caption in captions(inner):
                parts.append(("caption", ("Table: " if base == "table" else "Figure: ") + caption))
            for tab in re.finditer(r"\\begin\s*\{tabular\*?\}", inner):
                t_end, _ = find_env_end(inner, "tabular", tab.end())
                parts.append(("table", table_text(inner[tab.end():t_end])))
        elif base in ("tabular", "tabularx", "longtable"):
            flush()
            parts.append(("table", table_text(inner)))
        elif base in LIST_ENVS:
            items = re.split(r"\\item\s*(?:\[([^\]]*)\])?", _top_level_items(inner))
            for k in range(1, len(items), 2):
                label, body = items[k], items[k + 1].replace(ITEM_MARK, "\\item")
                prose.append("\n- " + (f"{label}: " if label else ""))
                for kind, part in convert(body):  # equations and code inside an item
                    if kind == "prose":  # already plain; to_text leaves plain text and math as they are
                        prose.append(part.replace("\n- ", "\n  - ") + "\n")
                    else:
                        flush()
                        parts.append((kind, part))
        else:  # abstract, center, minipage, quote, theorem-like: go on inside; their \\end{..} is dropped
            pos = inner_start
            if base in ("minipage", "tabularx") and text[pos:pos + 1] == "{":
                _, pos = brace_arg(text, pos)
    prose.append(text[pos:])
    flush()
    return parts


ITEM_MARK = "\x00item"


def _top_level_items(inner: str) -> str:
    """Hide the \\item of nested lists so that splitting on \\item finds only this list's items."""
    out, depth, pos = [], 0, 0
    for m in re.finditer(r"\\(begin|end)\s*\{(itemize|enumerate|description)\}|\\item\b", inner):
        if m.group(1) == "begin":
            depth += 1
        elif m.group(1) == "end":
            depth -= 1
        elif depth > 0:
            out.append(inner[pos:m.start()] + ITEM_MARK)
            pos = m.end()
    return "".join(out) + inner[pos:]


def captions(text: str) -> list[str]:
    out = []
    for m in re.finditer(r"\\(?:sub)?caption\*?\s*(?:\[[^\]]*\])?\s*\{", text):
        body, _ = brace_arg(text, m.end() - 1)
        cleaned = to_text(body).replace("\n", " ").strip()
        if cleaned:
            out.append(cleaned)
    return out


def table_text(inner: str) -> str:
    inner = re.sub(r"^\s*\{[^}]*\}", "", inner)  # the column spec
    rows = []
    for row in re.split(r"\\\\", inner):
        cells = [to_text(c).replace("\n", " ").strip() for c in row.split("&")]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def display_math(body: str, env: str | None) -> str:
    body = re.sub(r"\\(label|tag|nonumber|notag)\s*(\{[^}]*\})?", "", body).strip()
    body = "\n".join(line for line in body.split("\n") if line.strip())  # a blank line ends math in LaTeX
    if env in ("align", "flalign", "alignat", "eqnarray", "multline"):
        body = "\\begin{aligned}\n" + body + "\n\\end{aligned}"
    elif env == "gather":
        body = "\\begin{gathered}\n" + body + "\n\\end{gathered}"
    return f"\n$$\n{body}\n$$\n" if body else ""


def _commands(text: str) -> str:
    """Inline commands outside math: citations and refs go, wrappers keep their content, layout goes."""
    text = re.sub(r"~?\\(?:cite|citep|citet|citealp|citeauthor|citeyear|parencite|textcite|autocite)\*?"
                  r"(?:\[[^\]]*\])*\{[^}]*\}", "", text)

    text = re.sub(r"\\hyperref\s*\[[^\]]*\]", "", text)

    def ref(m):
        word = REF_WORDS.get(m.group(1).lower().rstrip("."), "") if m.group(1) else ""
        before = m.string[:m.start()].rstrip()
        return word.capitalize() if word and (not before or before[-1] in ".?!:") else word
    text = re.sub(r"(?:\b(Fig|Figs|Figure|Eq|Eqs|Equation|Table|Tab|Sec|Section|Chapter|Appendix)\.?\s*~?\s*)?"
                  r"\{?\\(?:ref|eqref|cref|Cref|autoref|pageref|vref)\*?\s*\{[^}]*\}\}?", ref, text)
    text = re.sub(r"\\(?:lstinline|verb)\*?([|!+])(.*?)\1", r"`\2`", text)
    out, pos = [], 0
    for m in re.finditer(r"\\([A-Za-z@]+)\*?|\\(['\"`^~=.])\s*", text):
        if m.start() < pos:
            continue
        out.append(text[pos:m.start()])
        pos = m.end()
        if m.group(2):  # accent: \'e or \'{e}
            if pos < len(text) and text[pos] == "{":
                letter, pos = brace_arg(text, pos)
            else:
                letter, pos = text[pos:pos + 1], pos + 1
            out.append(unicodedata.normalize("NFC", letter + ACCENTS[m.group(2)]) if letter else "")
            continue
        name = m.group(1)
        args = []
        while len(args) < ARGS.get(name, 1):
            j = pos
            while j < len(text) and text[j] in " \t":
                j += 1
            if j < len(text) and text[j] == "[" and not args:
                close = text.find("]", j)
                if close == -1:
                    break
                pos = close + 1
                continue
            if j < len(text) and text[j] == "{":
                arg, pos = brace_arg(text, j)
                args.append(arg)
                continue
            break
        if name in DROP_CMDS:
            continue
        if name in ("href",) and len(args) >= 2:
            out.append(_commands(args[1]))
        elif name in ("url", "path"):
            out.append(args[0] if args else "")
        elif name in ("texttt", "lstinline", "code", "mintinline", "verb"):
            out.append("`" + _commands(args[-1]) + "`" if args else "")
        elif name in ("footnote", "footnotetext"):
            out.append(" (" + _commands(args[0]) + ")" if args else "")
        elif name in ("textcolor", "colorbox", "Colorbox", "fcolorbox", "Fcolorbox", "foreignlanguage"):
            out.append(_commands(args[-1]) if args else "")
        elif name in ("LaTeX", "TeX"):
            out.append(name)
        elif name in ("ldots", "dots", "textellipsis"):
            out.append("...")
        elif name in ("S",):
            out.append("§")
        elif name in ("quad", "qquad", "hfill", "newline", "linebreak"):
            out.append(" ")
        elif args:  # \textbf{..}, \emph{..}, \say{..}, unknown wrappers: keep the last argument's words
            out.append(_commands(args[-1]))
    out.append(text[pos:])
    return "".join(out)


def _plain(text: str) -> str:
    text = text.replace("\\\\", "\n")
    text = _commands(text)
    for a, b in (("\\&", "&"), ("\\%", "%"), ("\\_", "_"), ("\\#", "#"), ("\\{", "{"), ("\\}", "}"),
                 ("\\$", "$"), ("``", "\u201c"), ("''", "\u201d"), ("---", "\u2014"), ("--", "\u2013"),
                 ("\\,", " "), ("\\;", " "), ("\\!", ""), ("\\ ", " "), ("~", " "), ("\\/", "")):
        text = text.replace(a, b)
    text = re.sub(r"(?<!\\)[{}]", "", text)
    return text.replace("\\", "")


def to_text(text: str) -> str:
    """Inline LaTeX to readable text; math kept as $...$ / $$...$$; lines joined except lists and equations."""
    pieces, pos = [], 0
    for m in MATH.finditer(text):
        pieces.append(_plain(text[pos:m.start()]))
        math = m.group(0)
        if math.startswith("\\(") or math.startswith("\\["):
            inner = math[2:-2]
            math = f"${inner}$" if math.startswith("\\(") else display_math(inner, None)
        elif math.startswith("$$"):
            math = display_math(math[2:-2], None)
        else:
            math = re.sub(r"\\label\s*\{[^}]*\}", "", math)
        pieces.append(math)
        pos = m.end()
    pieces.append(_plain(text[pos:]))
    out_lines, buf, in_math = [], [], False
    for line in "".join(pieces).split("\n"):
        s = line.strip()
        if s == "$$":
            if buf:
                out_lines.append(" ".join(buf))
                buf = []
            out_lines.append("$$")
            in_math = not in_math
        elif in_math:
            out_lines.append(line.rstrip())
        elif s.startswith("- "):
            if buf:
                out_lines.append(" ".join(buf))
            buf = [s]
        elif s:
            buf.append(s)
    if buf:
        out_lines.append(" ".join(buf))
    joined = "\n".join(re.sub(r"[ \t]+", " ", l) if not l.startswith((" ", "\t")) else l for l in out_lines)
    joined = re.sub(r" +([,.;:!?)])", r"\1", joined)
    return re.sub(r"\(\s*\)", "", joined).strip()
