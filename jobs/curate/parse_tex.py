"""LaTeX documents: follow \\input/\\include from the main file, drop comments, expand user macros, split blocks.

A main file is a .tex with \\documentclass; files it includes (recursively, relative to the main file's folder,
as LaTeX does) are read as part of it. A .tex file in a main file's folder tree that nothing includes is not a
document of its own (it is reported in the stats). Text conversion of each block is in tex_text.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from jobs.core.spec.parse import allowed_roots
from jobs.curate import tex_macros, tex_text
from jobs.curate.blocks import BadInput, Block, CurateError, read_text

INCLUDE = re.compile(r"\\(input|include|subfile)\s*(?:\{([^}]*)\}|\s([^\s\\{}%]+))")
USEPACKAGE = re.compile(r"\\usepackage\s*(?:\[[^\]]*\])?\s*\{([^}]*)\}")
SECTION = re.compile(r"\\(part|chapter|section|subsection|subsubsection|paragraph)\*?\s*(?:\[[^\]]*\])?\s*\{")
LEVELS = {"part": 0, "chapter": 1, "section": 2, "subsection": 3, "subsubsection": 4, "paragraph": 5}
VERBATIM_ENVS = ("lstlisting", "verbatim", "Verbatim", "minted", "comment")
BEGIN_END = re.compile(r"\\(begin|end)\s*\{([^}]*)\}")


def strip_comment(line: str) -> str:
    """The line without its %-comment (an escaped \\% is kept)."""
    for m in re.finditer(r"%", line):
        backslashes = len(line[:m.start()]) - len(line[:m.start()].rstrip("\\"))
        if backslashes % 2 == 0:
            return line[:m.start()]
    return line


def _readable(path: Path, folder: Path) -> Path:
    """An included file is read only inside the main file's folder or the repository (or QSLM_DATA_ROOT), so a
    document cannot make curate read /etc or /proc into a dataset; BadInput otherwise."""
    real = path.resolve()
    if not any(real.is_relative_to(root) for root in (folder.resolve(), *allowed_roots())):
        raise BadInput(path, f"an \\input leads to {real}, outside the document's folder {folder}; copy the file "
                             f"into that folder")
    return path


def resolve_include(name: str, folder: Path) -> tuple[Path | None, str | None]:
    """The included file and a warning when only a different letter case matched; (None, None) if missing."""
    candidates = [name] if name.endswith((".tex", ".sty")) else [name + ".tex", name]
    for c in candidates:
        p = folder / c
        if p.is_file():
            return _readable(p, folder), None
    for c in candidates:
        parent = (folder / c).parent
        if parent.is_dir():
            for p in sorted(parent.iterdir()):
                if p.name.lower() == Path(c).name.lower() and p.is_file():
                    return _readable(p, folder), f"\\input{{{name}}} matched {p.name} only by ignoring letter " \
                        f"case (fix the name: it breaks on case-sensitive file systems)"
    return None, None


def is_main(path: Path) -> bool:
    try:
        head = path.read_bytes()[:200_000].decode("utf-8", "replace")
    except OSError:
        return False
    return any(re.match(r"\s*\\documentclass", strip_comment(line)) for line in head.splitlines())


def _includes(path: Path, folder: Path, seen: set[Path]) -> None:
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return
    for line in text.splitlines():
        for m in INCLUDE.finditer(strip_comment(line)):
            try:
                target, _ = resolve_include((m.group(2) or m.group(3)).strip(), folder)
            except BadInput:
                continue  # reported when the main file is parsed
            if target is not None and target.resolve() not in seen:
                seen.add(target.resolve())
                _includes(target, folder, seen)


def plan(tex_files: list[Path]) -> tuple[list[Path], set[Path], set[Path]]:
    """(main files, files they include, .tex files under a main's folder that nothing includes)."""
    mains = [p for p in tex_files if is_main(p)]
    included: set[Path] = set()
    for m in mains:
        _includes(m, m.parent, included)
    included_paths = {p for p in tex_files if p.resolve() in included and p not in mains}
    unreferenced = set()
    for p in tex_files:
        if p in mains or p in included_paths:
            continue
        if any(m.parent == p.parent or m.parent in p.parents for m in mains):
            unreferenced.add(p)
    return mains, included_paths, unreferenced


def load_lines(path: Path, folder: Path, read: list, warnings: list, stack: tuple = ()) -> list[tuple]:
    """Lines of `path` with \\input files spliced in, comments removed: [(text, file, char offset)]."""
    text, data = read_text(path)
    read.append((path, data))
    out, offset, verbatim = [], 0, None
    for lineno, raw in enumerate(text.split("\n"), 1):
        start, offset = offset, offset + len(raw) + 1
        if verbatim:
            out.append((raw, path, start))
            if re.search(r"\\end\s*\{" + re.escape(verbatim) + r"\}", raw):
                verbatim = None
            continue
        line = strip_comment(raw)
        if not line.strip() and raw.strip():
            continue  # a comment-only line is no paragraph break in LaTeX
        m = re.search(r"\\begin\s*\{(" + "|".join(VERBATIM_ENVS) + r")\}", line)
        if m and not re.search(r"\\end\s*\{" + m.group(1) + r"\}", line[m.end():]):
            verbatim = m.group(1)
            out.append((raw, path, start))
            continue
        pos = 0
        for m in INCLUDE.finditer(line):
            name = (m.group(2) or m.group(3)).strip()
            target, warning = resolve_include(name, folder)
            if target is None:
                raise CurateError(f"{path}:{lineno}: `{raw.strip()}` includes {name!r}, but no file "
                                  f"{folder / name}[.tex] exists; add the file or fix the \\{m.group(1)} line")
            if warning:
                warnings.append(f"{path.name}:{lineno}: {warning}")
            if target.resolve() in stack:
                raise CurateError(f"{path}:{lineno}: `{raw.strip()}` includes {target.name}, which includes "
                                  f"itself (an \\input loop); remove one of the lines")
            out.append((line[pos:m.start()], path, start + pos))
            out.append(("", path, start + m.start()))  # \input starts a new paragraph only at blank lines
            out.extend(load_lines(target, folder, read, warnings, stack + (path.resolve(),)))
            pos = m.end()
        out.append((line[pos:], path, start + pos))
    return out


def local_packages(preamble: str, folder: Path, read: list) -> str:
    """The text of \\usepackage'd .sty files that live next to the main file (their macros matter)."""
    texts = []
    for m in USEPACKAGE.finditer(preamble):
        for name in m.group(1).split(","):
            sty = folder / f"{name.strip()}.sty"
            if sty.is_file():
                text, data = read_text(_readable(sty, folder))
                read.append((sty, data))
                texts.append("\n".join(strip_comment(line) for line in text.split("\n")))
    return "\n".join(texts)


def env_depth_change(line: str) -> int:
    change = 0
    for kind, name in BEGIN_END.findall(line):
        if name.strip() != "document":
            change += 1 if kind == "begin" else -1
    return change


def split_blocks(lines: list[tuple]) -> list[list[tuple]]:
    """Group lines into raw blocks: blank lines at environment depth 0 split; a heading is its own block."""
    blocks, current, depth, verbatim = [], [], 0, None
    for line in lines:
        text = line[0]
        if verbatim:
            current.append(line)
            if re.search(r"\\end\s*\{" + re.escape(verbatim) + r"\}", text):
                verbatim = None
            continue
        m = re.search(r"\\begin\s*\{(" + "|".join(VERBATIM_ENVS) + r")\}", text)
        if m and not re.search(r"\\end\s*\{" + m.group(1) + r"\}", text[m.end():]):
            verbatim = m.group(1)
            current.append(line)
            continue
        if depth == 0 and not text.strip():
            if current:
                blocks.append(current)
            current = []
            continue
        if depth == 0 and SECTION.match(text.strip()):
            if current:
                blocks.append(current)
            blocks.append([line])
            current = []
            continue
        current.append(line)
        depth = max(0, depth + env_depth_change(text))
    if current:
        blocks.append(current)
    return blocks


def parse(main: Path) -> tuple[list[Block], list[tuple[Path, bytes]], list[str]]:
    """Blocks of a LaTeX document, the files read [(path, bytes)], and warnings (case-mismatched \\input)."""
    read, warnings = [], []
    lines = load_lines(main, main.parent, read, warnings)
    begin = next((i for i, l in enumerate(lines) if "\\begin{document}" in l[0]), None)
    end = next((i for i, l in enumerate(lines) if "\\end{document}" in l[0]), len(lines))
    preamble = "\n".join(l[0] for l in lines[:begin]) if begin is not None else ""
    body = lines[begin + 1:end] if begin is not None else lines
    macros = tex_macros.collect_macros(local_packages(preamble, main.parent, read) + "\n" + preamble)
    section: list[tuple[int, str]] = []  # (level, title)
    blocks = []
    for raw in split_blocks(body):
        text = "\n".join(l[0] for l in raw)
        file, start = raw[0][1], raw[0][2]
        same_file = [l for l in raw if l[1] == file]
        stop = same_file[-1][2] + len(same_file[-1][0])
        macros.update(tex_macros.collect_macros(text))
        text = tex_macros.remove_definitions(text)
        m = SECTION.match(text.strip())
        if m:
            stripped = text.strip()
            title, after = tex_macros.brace_arg(stripped, m.end() - 1)
            level = LEVELS[m.group(1)]
            section = [s for s in section if s[0] < level]
            section.append((level, tex_text.to_text(tex_macros.expand(title, macros)).replace("\n", " ").strip()))
            text = stripped[after:]
        path = tuple(t for _, t in section)
        for kind, part in tex_text.convert(tex_macros.expand(text, macros)):
            blocks.append(Block(path, kind, part, file, start, stop))
    return blocks, read, warnings
