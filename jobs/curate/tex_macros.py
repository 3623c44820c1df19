"""LaTeX user macros: \\newcommand, \\def and \\DeclareMathOperator definitions, collected and expanded."""

from __future__ import annotations

import re

DEF = re.compile(r"\\(?:re|provide)?newcommand\*?\s*\{?\s*(\\[A-Za-z@]+)\s*\}?\s*(?:\[(\d)\])?\s*(\[[^\]]*\])?\s*\{"
                 r"|\\[gex]?def\s*(\\[A-Za-z@]+)\s*((?:#\d)*)\s*\{"
                 r"|\\DeclareMathOperator\*?\s*\{\s*(\\[A-Za-z@]+)\s*\}\s*\{"
                 r"|\\(?:re)?newenvironment\*?\s*\{[^}]*\}\s*(?:\[\d\])?\s*\{")


def brace_arg(text: str, i: int) -> tuple[str, int]:
    """The content of the {...} group opening at text[i] and the index after it (unbalanced: to the end)."""
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "\\":
            continue
        if c == "{" and (j == 0 or text[j - 1] != "\\"):
            depth += 1
        elif c == "}" and text[j - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[i + 1:j], j + 1
    return text[i + 1:], len(text)


def collect_macros(text: str) -> dict[str, tuple[int, str]]:
    """User macros defined in `text`: name -> (number of arguments, body)."""
    macros = {}
    for m in DEF.finditer(text):
        body, _ = brace_arg(text, m.end() - 1)
        if m.group(1):
            macros[m.group(1)[1:]] = (int(m.group(2) or 0), body)
        elif m.group(4):
            macros[m.group(4)[1:]] = (m.group(5).count("#"), body)
        elif m.group(6):
            macros[m.group(6)[1:]] = (0, "\\operatorname{" + body + "}")
    return macros


def remove_definitions(text: str) -> str:
    out, pos = [], 0
    for m in DEF.finditer(text):
        if m.start() < pos:
            continue
        _, end = brace_arg(text, m.end() - 1)
        if m.group(0).lstrip("\\").startswith(("newenv", "renewenv")):
            _, end = brace_arg(text, end) if end < len(text) and text[end] == "{" else (None, end)
        out.append(text[pos:m.start()])
        pos = end
    return "".join(out) + text[pos:]


def expand(text: str, macros: dict[str, tuple[int, str]], passes: int = 6) -> str:
    """Replace user macros by their bodies (arguments substituted), up to `passes` levels of nesting."""
    if not macros:
        return text
    name_re = re.compile(r"\\([A-Za-z@]+)")
    for _ in range(passes):
        out, pos, changed = [], 0, False
        for m in name_re.finditer(text):
            if m.start() < pos or m.group(1) not in macros:
                continue
            nargs, body = macros[m.group(1)]
            j, args = m.end(), []
            for _ in range(nargs):
                while j < len(text) and text[j] in " \t\n":
                    j += 1
                if j < len(text) and text[j] == "{":
                    arg, j = brace_arg(text, j)
                elif j < len(text):
                    arg, j = text[j], j + 1
                else:
                    arg = ""
                args.append(arg)
            for k, arg in enumerate(args, 1):
                body = body.replace(f"#{k}", arg)
            if nargs == 0 and j < len(text) and text[j] == " " and not body.endswith(" "):
                j += 1  # `\macro text`: the space only ends the macro name
            out.append(text[pos:m.start()] + body + (" " if nargs == 0 and text[m.end():m.end() + 1] == " " else ""))
            pos, changed = j, True
        text = "".join(out) + text[pos:]
        if not changed:
            break
    return text
