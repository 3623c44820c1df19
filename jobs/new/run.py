"""From a folder of documents to a build spec and a draft eval suite (what `make new` runs).

copy the documents into data/raw/<tag>/ (or, asked, point a local-only build at the folder) -> parse them as
curate does (`python -m jobs.curate --catalogue`, so paragraph ids are the build's) -> keywords -> draft questions
(extractive, or phrased by a writer) -> leakage check of the draft -> data/eval/<tag>.yaml, data/builds/<tag>.yaml.
Nothing is overwritten: an existing spec or suite of that tag is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from jobs.core.store.dataset_folder import read_rows
from jobs.core.errors import QslmError
from jobs.core.repo import BUILDS_DIR, REPO_ROOT
from jobs.core.spec.load import load_spec, spec_by_tag
from jobs.core.spec.parse import LOCAL_ROOTS_FILE
from jobs.core.spec.tags import TAG_PATTERN
from jobs.core.spec.schema import SpecError
from jobs.new import draft, keywords, specfile

DATA_DIR = REPO_ROOT / "data"  # builds/, eval/ and raw/ are written beneath it (a test passes its own)
MAX_FILES = 5_000  # a thesis and its papers are tens of files; more is a wrong folder (a home directory?)
MAX_BYTES = 2 << 30  # 2 GiB copied into the repository at most
SMALL_CORPUS = 20  # paragraphs long enough to train on; below it a build learns little (curate warns too)


class NewError(QslmError):
    """`make new` cannot go on; the message names the folder or file and the fix."""


def _rel(path: Path) -> str:
    path = path.resolve()
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)


def document_files(src: Path) -> list[Path]:
    """The regular files under `src` to copy: hidden ones and links out of the folder stay behind."""
    files = []
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if not p.resolve().is_relative_to(src.resolve()):
            print(f"new: not copied: {rel} (a link to a file outside {src})")
            continue
        files.append(p)
        if len(files) > MAX_FILES:
            raise NewError(f"{src} holds more than {MAX_FILES:,} files; point SOURCES at the folder of your documents")
    return files


def _digest(files: list[Path], root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def copy_documents(src: Path, dest: Path) -> tuple[int, int]:
    """Copy the documents into `dest` (which appears complete or not at all); (files, bytes). A `dest` that
    already holds exactly these files is kept (a rerun); one that holds others is refused."""
    files = document_files(src)
    total = sum(p.stat().st_size for p in files)
    if not files:
        raise NewError(f"{src} holds no files to copy (hidden files are skipped)")
    if total > MAX_BYTES:
        raise NewError(f"{src} holds {total / 2**30:.1f} GiB; at most {MAX_BYTES >> 30} GiB is copied into the "
                       f"repository. Use LINK=1 to build from the folder where it is")
    if dest.exists():
        if _digest(document_files(dest), dest) == _digest(files, src):
            print(f"new: {_rel(dest)}/ already holds these {len(files)} files: kept")
            return len(files), total
        raise NewError(f"{_rel(dest)}/ exists and holds other files; choose another VERSION, or remove it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        for p in files:
            target = tmp / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, target)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(files), total


def allow_outside(folder: Path) -> None:
    """Record `folder` in this checkout's LOCAL_ROOTS_FILE (untracked), so local builds may read it."""
    lines = LOCAL_ROOTS_FILE.read_text(encoding="utf-8").splitlines() if LOCAL_ROOTS_FILE.is_file() else []
    if str(folder) not in lines:
        header = [] if lines else ["# Folders outside the repository that this checkout's specs may read (make new "
                                   "LINK=1). Untracked: builds started by make submit or a git push never see them."]
        LOCAL_ROOTS_FILE.write_text("\n".join(lines + header + [str(folder)]) + "\n", encoding="utf-8")


def catalogue(source: Path) -> list[dict]:
    """Every paragraph of the documents with the id a build gives it: curate's own parse, as a subprocess."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "catalogue.parquet"
        proc = subprocess.run([sys.executable, "-m", "jobs.curate", "--sources", str(source), "--catalogue",
                               str(out)], cwd=REPO_ROOT, capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            print(f"new: {line.removeprefix('curate: ')}")
        if proc.returncode != 0:
            raise NewError(proc.stderr.strip().removeprefix("curate: error: ") or "parsing the documents failed")
        return read_rows(out)


def check_target(tag: str, src: Path, data: Path) -> tuple[Path, Path]:
    if not TAG_PATTERN.match(tag):
        raise NewError(f"{tag[:80]!r} is not a valid build tag: letters, digits, '.', '_' or '-' (no slashes)")
    spec_path, suite_path = data / "builds" / f"{tag}.yaml", data / "eval" / f"{tag}.yaml"
    for path in (spec_path, suite_path):
        if path.exists():
            raise NewError(f"{_rel(path)} exists; make new never overwrites: choose another VERSION, or remove it")
    if not src.is_dir():
        raise NewError(f"SOURCES={src}: not a folder; give the folder that holds your documents")
    if src.resolve().is_relative_to(REPO_ROOT) and not src.resolve().is_relative_to(data / "raw"):
        raise NewError(f"SOURCES={src} is inside the repository but not under data/raw/; give your own folder")
    return spec_path, suite_path


def make_writer(kind: str, like: str):
    """A writer of the template spec's base model (engine) or the endpoint in QSLM_WRITER_* (openai)."""
    from jobs.core.engine.basemodel import resolve_base_model
    from jobs.core.spec.schema import SynthesizeSpec
    from jobs.core.engine.writers import EngineWriter, OpenAIWriter

    spec = spec_by_tag(like)
    y = spec.synthesize or SynthesizeSpec()
    spec = dataclasses.replace(spec, synthesize=dataclasses.replace(y, writer=dataclasses.replace(y.writer,
                                                                                                kind=kind)))
    return OpenAIWriter(spec) if kind == "openai" else EngineWriter(spec, resolve_base_model(spec))


def write_suite(path: Path, tag: str, items: list, abstain: list[dict], how: str) -> None:
    data = {"name": tag, "description": f"Drafted by `make new` from the documents ({how}); every question is a "
                                        f"draft until reviewed (make review VERSION={tag}).",
            "questions": [i.to_yaml() for i in items] + abstain}
    header = (f"# {tag}: questions about your own documents, drafted by `make new` ({how}).\n"
              f"# Every question is `status: draft` until a person reviews it: make review VERSION={tag}\n"
              f"# (accept, edit or drop each). References are condensed, never the source sentence itself: a\n"
              f"# verbatim reference would make curate's leakage check remove that paragraph from training.\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110), encoding="utf-8")


def new(tag: str, src: Path, writer: str | None = None, link: bool = False, like: str = "v2",
        questions: int = 24, data: Path = DATA_DIR, qa: Path | None = None) -> dict:
    """Write data/builds/<tag>.yaml and data/eval/<tag>.yaml (and data/raw/<tag>/ unless `link`); returns a
    summary {documents, paragraphs, keywords, questions, abstain, sections, leakage, writer}."""
    src = Path(os.path.expanduser(str(src))).resolve() if src else Path()
    spec_path, suite_path = check_target(tag, src, data)
    if qa is not None and not Path(os.path.expanduser(str(qa))).is_file():
        raise NewError(f"QA={qa}: no such file; give a JSONL of {{\"question\": ..., \"answer\": ...}} lines")
    if not TAG_PATTERN.match(like):
        raise NewError(f"LIKE={like[:80]!r} is not a build tag (data/builds/<tag>.yaml)")
    like_yaml = yaml.safe_load((BUILDS_DIR / f"{like}.yaml").read_text(encoding="utf-8")) \
        if (BUILDS_DIR / f"{like}.yaml").is_file() else None
    if not isinstance(like_yaml, dict):
        raise NewError(f"LIKE={like}: no build spec data/builds/{like}.yaml to take the settings from")
    if link:
        allow_outside(src)
        source, source_note = src, (f"read where they are ({src}): a local-only build, allowed for this checkout in "
                                    f"{LOCAL_ROOTS_FILE.name} (untracked; make submit and a git push cannot see it)")
        print(f"new: LINK=1: the spec reads {src} directly; the allowance is recorded in {_rel(LOCAL_ROOTS_FILE)} "
              f"(this checkout only, untracked)")
    elif src.is_relative_to((data / "raw").resolve()):
        source, source_note = src, "already in the repository: read where they are"
        print(f"new: {_rel(src)} is already under data/raw/: the spec reads it there, nothing is copied")
    else:
        source = data / "raw" / tag
        n, size = copy_documents(src, source)
        source_note = f"copied by make new from {src} ({n} files, {size / 1024:,.0f} KiB); versioned with the project"
        print(f"new: copied {n} files ({size / 1024:,.0f} KiB) from {src} into {_rel(source)}/")
    rows = catalogue(source)
    min_chars = int((like_yaml.get("curate") or {}).get("min_paragraph_chars", 120))
    threshold = float((like_yaml.get("curate") or {}).get("near_duplicate_threshold", 0.85))
    prose = [r for r in rows if draft.usable(r, 0)]  # content prose: no references or acknowledgements
    terms = keywords.vocabulary(prose)
    chosen, selectable = keywords.propose(prose, terms)
    usable = [r for r in rows if draft.usable(r, min_chars)]
    documents = sorted({r["source_path"] for r in rows})
    print(f"new: {len(documents)} document(s), {len(rows)} paragraphs, {len(usable)} long enough to train on "
          f"(curate.min_paragraph_chars {min_chars})")
    if len(usable) < SMALL_CORPUS:
        print(f"new: warning: only {len(usable)} paragraphs of {min_chars}+ characters: a build learns little from "
              f"so few. Lower curate.min_paragraph_chars in {_rel(spec_path)}, add documents, or turn on synthesis")
    if qa is not None:
        from jobs.new.qa_suite import items_from_pairs

        items, notes = items_from_pairs(Path(os.path.expanduser(str(qa))), terms, rows)
        for note in notes:
            print(f"new: {note}")
        how = f"your question-answer pairs from {Path(qa).name}, matched to the documents' paragraphs"
    else:
        items = draft.draft(rows, terms, selectable, questions, min_chars)
        how = "offline extractive drafts from the documents' own sentences, no model"
    if writer and qa is None:
        items, how = phrase_items(items, writer, like, threshold)
    print(f"new: drafting: {how}")
    items, leaked = draft.keep_clean(items, rows, threshold)
    abstain = draft.abstain_items(rows)
    asked, sections = draft.section_coverage(rows, items, min_chars)
    if not items:
        raise NewError(f"no question could be drafted: no sentence of 8-45 words in {len(usable)} usable paragraphs "
                       f"names a distinctive term. Add documents, or write data/eval/{tag}.yaml by hand")
    write_suite(suite_path, tag, items, abstain, how)
    selected = len(selectable & {r["id"] for r in usable})
    keyword_note = (f"proposed from the documents: the terms that set them apart from general language (TF-IDF "
                    f"against wordfreq's background), then section titles' terms; they select {selected} "
                    f"of the {len(usable)} paragraphs long enough to train on")
    text = specfile.render(tag, like, like_yaml, [_rel(source) if not link else str(source)], chosen, source_note,
                           keyword_note, _rel(suite_path), "drafted by make new: review it (make review VERSION="
                           f"{tag}) before trusting the gate", f"{tag}: {len(documents)} document(s) from {src.name}")
    spec_path.write_text(text, encoding="utf-8")
    try:
        load_spec(spec_path)  # what make build checks first; a failure here is a bug in make new
    except SpecError as exc:
        spec_path.unlink()
        suite_path.unlink()
        raise NewError(f"the spec make new wrote does not load ({exc}); nothing was kept") from None
    summary = {"documents": len(documents), "paragraphs": len(rows), "keywords": chosen, "questions": len(items),
               "abstain": len(abstain), "sections": [asked, sections], "leakage": leaked, "writer": how}
    print(report(tag, spec_path, suite_path, summary))
    return summary


def phrase_items(items: list, kind: str, like: str, threshold: float) -> tuple[list, str]:
    """Phrase the drafts with a writer, saying before anything is sent where the documents' text goes."""
    from jobs.new.phrase import phrase

    w = make_writer(kind, like)
    if kind == "openai":
        print(f"new: the writer {w.name} at {w.note.removeprefix('endpoint ')} will receive the text of "
              f"{len(items)} paragraphs of your documents (a remote service sees them)", flush=True)
    else:
        print(f"new: the writer {w.name} (the base model, on this machine) phrases {len(items)} questions", flush=True)
    outcome = phrase(items, w, threshold)
    kept = ", ".join(f"{n} {why}" for why, n in sorted(outcome.items()) if why != "phrased") or "none"
    return items, (f"phrased by the writer {w.name}: {outcome['phrased']} of {len(items)}; the rest stay offline "
                   f"extractive drafts (refused phrasings: {kept})")


def report(tag: str, spec_path: Path, suite_path: Path, s: dict) -> str:
    lines = [f"new: wrote {_rel(spec_path)} ({len(s['keywords'])} keywords: {', '.join(s['keywords'][:12])}"
             f"{' ...' if len(s['keywords']) > 12 else ''})",
             f"new: wrote {_rel(suite_path)}: {s['questions']} questions + {s['abstain']} abstain items across "
             f"{s['sections'][0]} of {s['sections'][1]} sections, every one status: draft"]
    if s["leakage"]:
        lines.append(f"new: leakage check: {len(s['leakage'])} paragraph(s) nearly copied by a question or reference "
                     f"(drafts that do were dropped; your own pairs stay, and curate will keep those paragraphs out "
                     f"of training: rephrase the answer to keep them in): "
                     + "; ".join(f"{x['question']} ({x['field']}) ~ {x['paragraph']}" for x in s["leakage"][:5]))
    else:
        lines.append("new: leakage check: no drafted question or reference nearly copies a paragraph (curate will "
                     "remove no training example for this suite; `stats.json` examples.leakage lists any it does)")
    lines.append(f"next: make review VERSION={tag}   (accept, edit or drop each draft), then make build VERSION={tag}")
    return "\n".join(lines)
