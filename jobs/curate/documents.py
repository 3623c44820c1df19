"""Documents in: find the files under the source folders, check them, and parse each by its extension.

Every parser returns `Block`s (blocks.py); this module numbers them into `Paragraph`s with stable ids
`<document>#<section-slug-path>#p<index>`. A document that raises `BadInput` is skipped and reported, or fails
the stage, as the spec's `curate.on_bad_input` says.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from jobs.core.spec import REPO_ROOT
from jobs.curate import parse_md, parse_pdf, parse_rst, parse_tex
from jobs.curate.blocks import BadInput, Block, CurateError, read_text

TEXT_SUFFIXES = {".tex", ".md", ".markdown", ".rst", ".txt"}
DOCUMENT_SUFFIXES = TEXT_SUFFIXES | {".pdf"}
# Files that travel with documents but are not prose about the domain.
NOT_PROSE = re.compile(r"^(license|licence|notice|copying|authors|changelog)(\.[a-z]+)?$", re.I)


@dataclass(frozen=True)
class Paragraph:
    id: str
    doc: str  # the document (for LaTeX: the main file), relative
    file: str  # the file the text came from, relative
    file_sha256: str
    section: str  # "Chapter > Section"
    index: int  # position within its section
    kind: str
    text: str
    start: int
    end: int
    page: int = 0  # 1-based PDF page; 0 where the format has none


@dataclass
class Document:
    path: str  # relative
    format: str  # tex | md | rst | pdf | txt
    files: list[dict] = field(default_factory=list)  # [{path, sha256, bytes}] every file read
    paragraphs: list[Paragraph] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def display_path(path: Path, source_root: Path) -> str:
    """A stable relative name: repository-relative inside the repo, else `<source folder name>/<rel>`."""
    path = path.resolve()
    if path.is_relative_to(REPO_ROOT):
        return path.relative_to(REPO_ROOT).as_posix()
    if path.is_relative_to(source_root.resolve()):
        return (Path(source_root.resolve().name) / path.relative_to(source_root.resolve())).as_posix()
    return path.as_posix()  # outside both: named in a message only, such a file is never read


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def slug(title: str) -> str:
    s = re.sub(r"[^\w]+", "-", unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower())
    return s.strip("-")[:60] or "untitled"


def merge_math(blocks: list[Block]) -> list[Block]:
    """Keep a display equation with the sentence that introduces it and the clause that follows it
    ("... the objective function: $$f = ...$$ where C is ...")."""
    out: list[Block] = []
    for b in blocks:
        prev = out[-1] if out else None
        text = b.text.strip()
        joinable = prev is not None and prev.kind == "prose" and b.kind == "prose" and prev.section == b.section \
            and prev.file == b.file
        if joinable and (text.startswith("$$") or (prev.text.rstrip().endswith("$$") and text[:1].islower())):
            out[-1] = Block(prev.section, "prose", prev.text.rstrip() + "\n" + text, prev.file, prev.start, b.end,
                            prev.page)
        else:
            out.append(b)
    return out


def number_blocks(doc: Document, blocks: list[Block], source_root: Path, file_hashes: dict[Path, str]) -> None:
    """Turn parser blocks into paragraphs with ids `<doc>#<section slugs>#p<index>` (index within its section)."""
    counters: dict[tuple[str, ...], int] = {}
    names = {f: display_path(f, source_root) for f in {b.file for b in blocks}}
    for b in merge_math(blocks):
        text = b.text.strip()
        if not text:
            continue
        index = counters.get(b.section, 0)
        counters[b.section] = index + 1
        section_slug = "/".join(slug(s) for s in b.section) or "top"
        doc.paragraphs.append(Paragraph(
            id=f"{doc.path}#{section_slug}#p{index}", doc=doc.path, file=names[b.file],
            file_sha256=file_hashes[b.file.resolve()], section=" > ".join(b.section), index=index, kind=b.kind,
            text=text, start=b.start, end=b.end, page=b.page))


def discover(sources: list[Path]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """All candidate files as (path, source_root), sorted; plus the files ignored (with why), for the stats."""
    found, ignored = [], []
    for root in sources:
        if not root.exists():
            raise CurateError(f"source folder {root} does not exist; fix curate.sources in the spec or --sources")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        base = root.parent if root.is_file() else root
        for p in files:
            if any(part.startswith(".") for part in p.relative_to(base).parts):
                continue  # hidden files and folders (.env, .git, editor swap files) are never documents
            if not p.resolve().is_relative_to(base.resolve()):
                ignored.append(f"{p.relative_to(base).as_posix()} (a link to a file outside its source folder)")
                continue
            rel = display_path(p, base)
            if NOT_PROSE.match(p.name):
                ignored.append(f"{rel} (licence/notice file)")
            elif p.suffix.lower() not in DOCUMENT_SUFFIXES:
                ignored.append(f"{rel} (not a document type: {p.suffix or 'no extension'})")
            else:
                found.append((p, base))
    return found, sorted(ignored)


def load_documents(sources: list[Path], on_bad_input: str) -> tuple[list[Document], list[dict], list[str]]:
    """Parse every document under `sources`. Returns (documents, skipped [{path, reason}], ignored files)."""
    found, ignored = discover(sources)
    tex_files = [p for p, _ in found if p.suffix.lower() == ".tex"]
    mains, included, unreferenced = parse_tex.plan(tex_files)
    ignored += [f"{display_path(p, b)} (a .tex file that no main .tex includes)" for p, b in found
                if p in unreferenced]
    docs, skipped = [], []
    for path, root in found:
        if path in included or path in unreferenced:
            continue  # read as part of its main file
        rel = display_path(path, root)
        suffix = path.suffix.lower()
        try:
            doc = Document(path=rel, format={".markdown": "md"}.get(suffix, suffix[1:]))
            if suffix == ".pdf":
                data = path.read_bytes()
                blocks = parse_pdf.parse(path, data)
                hashes = {path.resolve(): sha256_bytes(data)}
                doc.files.append({"path": rel, "sha256": hashes[path.resolve()], "bytes": len(data)})
            elif suffix == ".tex":
                blocks, read, doc.warnings = parse_tex.parse(path)
                outside = [f for f, _ in read if not f.resolve().is_relative_to(root.resolve())]
                if outside:  # e.g. \\input{/etc/hostname}: never read into a dataset, nor stored by publish
                    raise BadInput(path, f"it includes {outside[0].name}, a file outside its source folder "
                                         f"{root}; copy that file into the folder")
                hashes = {}
                for f, data in read:
                    hashes[f.resolve()] = sha256_bytes(data)
                    doc.files.append({"path": display_path(f, root), "sha256": hashes[f.resolve()],
                                      "bytes": len(data)})
            else:
                text, data = read_text(path)
                parser = {".md": parse_md, ".markdown": parse_md, ".rst": parse_rst}.get(suffix, parse_md)
                blocks = parser.parse(path, text) if suffix != ".txt" else parse_md.parse_plain(path, text)
                hashes = {path.resolve(): sha256_bytes(data)}
                doc.files.append({"path": rel, "sha256": hashes[path.resolve()], "bytes": len(data)})
            number_blocks(doc, blocks, root, hashes)
        except BadInput as exc:
            if on_bad_input == "fail":
                raise CurateError(f"{exc} (curate.on_bad_input is 'fail'; set it to 'skip' to skip and report "
                                  f"such files instead)") from None
            where = "" if Path(exc.path) == path else f"{display_path(Path(exc.path), root)} (included): "
            skipped.append({"path": rel, "reason": where + exc.reason})
            continue
        doc.files.sort(key=lambda f: f["path"])
        docs.append(doc)
    used = {f["path"] for d in docs for f in d.files}  # a local .sty read for its macros is not ignored
    return docs, skipped, sorted(i for i in ignored if i.split(" (")[0] not in used)
