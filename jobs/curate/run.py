"""The curate stage: documents in, a dataset folder out (see docs/architecture.md, "Dataset folder").

parse -> select (keywords, optional MiniLM, overrides) -> dedup paragraphs -> examples -> dedup examples ->
cap -> split by section -> leakage check against the eval suite -> parquet + stats.json + curate-info.json.
The same inputs and spec give byte-identical data files: everything is sorted and nothing time-dependent goes
into them (seconds go only into curate-info.json).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from jobs.core.dataset_folder import (CATALOGUE_SCHEMA, DATA_FILES, EXAMPLE_SCHEMA, HELDOUT_SCHEMA, PARAGRAPH_SCHEMA,
                                      dataset_sha256, is_empty_or_absent, write_folder, write_parquet)
from jobs.core.leakage import LeakageCheck, all_suites, leakage
from jobs.core.model import resolve_base_model
from jobs.core.neardup import dedup
from jobs.core.provenance import library_versions
from jobs.core.spec import BuildSpec
from jobs.core.suite import load_suite
from jobs.core.text import language
from jobs.curate import examples, select, split, stats
from jobs.curate.explain import explain as explain_listing
from jobs.curate.blocks import CurateError
from jobs.curate.documents import load_documents


@dataclass
class Curated:
    """What the selection and example phases produce: the dataset's rows and the why of every decision."""

    docs: list
    skipped: list[dict]
    ignored: list[str]
    counts: Counter
    selection: select.Selection
    kept: list
    dup_paragraphs: list[dict]
    dup_examples: int
    capped: int
    rows: list[dict]  # every example before the split
    train: list[dict]
    evals: list[dict]
    held: list[str]  # held-out section keys
    leaked: list[dict]
    heldout: list[dict]  # paragraphs of the held-out sections, for perplexity
    paragraphs: list[dict]  # the kept paragraphs with their context, for synthesis
    leakage_suites: list[str]  # every eval suite checked for leakage
    catalogue: list[dict]  # every parsed paragraph, in document order (catalogue.parquet)

    @property
    def selected(self) -> list:
        return self.selection.selected


def read_documents(spec: BuildSpec, sources: list[Path] | None) -> tuple[list, list[dict], list[str]]:
    source_dirs = [Path(s) for s in (sources or spec.curate.sources)]
    docs, skipped, ignored = load_documents(source_dirs, spec.curate.on_bad_input)
    if not docs:
        raise CurateError(f"no readable documents (.tex .md .rst .pdf .txt) under {', '.join(map(str, source_dirs))}"
                          + (f"; {len(skipped)} skipped as bad input" if skipped else ""))
    return docs, skipped, ignored


def dedup_examples(rows: list[dict]) -> tuple[list[dict], int]:
    """Drop examples whose messages are identical (same content hash id)."""
    seen, out = set(), []
    for r in rows:
        if r["id"] not in seen:
            seen.add(r["id"])
            out.append(r)
    return out, len(rows) - len(out)


def paragraph_rows(kept: list, held: set[str]) -> list[dict]:
    """paragraphs.parquet: each kept paragraph with its context and the side of the split its section is on."""
    ctx = lambda ps: [{"id": q.id, "kind": q.kind, "text": q.text} for q in ps]  # noqa: E731
    return sorted(({"id": s.paragraph.id, "text": s.paragraph.text, "kind": s.paragraph.kind,
                    "source_path": s.paragraph.file, "source_sha256": s.paragraph.file_sha256,
                    "section": s.paragraph.section, "keywords": list(s.keywords), "reason": s.reason,
                    "split": "eval" if split.paragraph_section(s.paragraph.id) in held else "train",
                    "language": language(s.paragraph.text), "before": ctx(s.before), "after": ctx(s.after)}
                   for s in kept), key=lambda r: r["id"])


def catalogue_rows(docs: list, kept: list, held: set[str]) -> list[dict]:
    """catalogue.parquet: every paragraph parsed from the sources, in document order, with whether it was kept
    and the side of the held-out split it is on."""
    kept_ids = {s.paragraph.id for s in kept}
    return [{"id": p.id, "text": p.text, "kind": p.kind, "source_path": p.file, "source_sha256": p.file_sha256,
             "section": p.section, "page": p.page, "selected": p.id in kept_ids,
             "split": "eval" if split.paragraph_section(p.id) in held else "train", "language": language(p.text)}
            for d in docs for p in d.paragraphs]


def make_dataset(spec: BuildSpec, docs: list, skipped: list[dict], ignored: list[str]) -> Curated:
    """select -> dedup paragraphs -> examples -> dedup examples -> cap -> split by section -> leakage."""
    c = spec.curate
    counts: Counter = Counter()
    selection = select.select(docs, c, load_suite(spec.eval.suite), counts)
    kept, dup_paragraphs = dedup(selection.selected, lambda s: s.paragraph.text, lambda s: s.paragraph.id,
                                 c.near_duplicate_threshold)
    rows = [r for s in kept for r in examples.make_examples(s, c.templates, c.system_prompt, c.seed)]
    rows, dup_examples = dedup_examples(rows)
    rows.sort(key=lambda r: r["id"])
    capped = max(0, len(rows) - c.max_examples)
    rows = rows[:c.max_examples]
    train, evals, held = split.split_by_section(rows, c.eval_fraction, c.seed)
    suites = all_suites(spec.eval.suite)
    train, leaked = leakage(train, LeakageCheck(suites, c.near_duplicate_threshold))
    if not train:
        raise CurateError(f"no training examples: {sum(len(d.paragraphs) for d in docs)} paragraphs in {len(docs)} "
                          f"documents, {len(selection.selected)} selected ({dict(counts)}), {len(leaked)} removed "
                          f"as copies of eval answers. Check curate.keywords and curate.min_paragraph_chars in "
                          f"{spec.source_file}, or the sources (`--explain` shows every paragraph's decision)")
    held_set = set(held)
    heldout = sorted(({"id": p.id, "text": p.text, "source_path": p.file, "section": p.section}
                      for d in docs for p in d.paragraphs
                      if p.kind in ("prose", "caption") and split.paragraph_section(p.id) in held_set),
                     key=lambda r: r["id"])
    return Curated(docs, skipped, ignored, counts, selection, kept, dup_paragraphs, dup_examples, capped, rows,
                   train, evals, held, leaked, heldout, paragraph_rows(kept, held_set), [s.name for s in suites],
                   catalogue_rows(docs, kept, held_set))


def source_files(docs: list) -> list[tuple[str, str, int]]:
    """(path, sha256, bytes) of every file the documents were read from (a LaTeX document has several)."""
    return sorted({(f["path"], f["sha256"], f["bytes"]) for d in docs for f in d.files})


def dataset_stats(spec: BuildSpec, d: Curated, model_dir: Path) -> dict:
    """stats.json: documents, paragraph decisions, examples, sections, token lengths, coverage, equations."""
    files = source_files(d.docs)
    kept_texts = [s.paragraph.text for s in d.kept]
    example_texts = [m["content"] for r in d.train + d.evals for m in r["messages"] if m["role"] == "assistant"]
    lengths = stats.token_lengths(d.train + d.evals, model_dir)
    return {
        "documents": {
            "count": len(d.docs), "by_format": dict(sorted(Counter(x.format for x in d.docs).items())),
            "files": len(files), "bytes": sum(f[2] for f in files),
            "skipped": sorted(d.skipped, key=lambda s: s["path"]), "ignored": d.ignored,
            "warnings": sorted(w for x in d.docs for w in x.warnings),
        },
        "paragraphs": {
            "seen": sum(len(x.paragraphs) for x in d.docs),
            "by_kind": dict(sorted(Counter(p.kind for x in d.docs for p in x.paragraphs).items())),
            "selected": len(d.selected), "kept": len(d.kept), "duplicates_removed": len(d.dup_paragraphs),
            "decisions": dict(sorted(d.counts.items())), "duplicates": d.dup_paragraphs,
            "semantic_selection": d.selection.semantic,
        },
        "examples": {
            "train": len(d.train), "eval": len(d.evals),
            "by_template": dict(sorted(Counter(r["template"] for r in d.train + d.evals).items())),
            "duplicates_removed": d.dup_examples, "capped": d.capped,
            "leakage_removed": len(d.leaked), "leakage": d.leaked, "leakage_suites": d.leakage_suites,
        },
        "sections": {"total": len({split.section_key(r) for r in d.rows}), "held_out": len(d.held),
                     "held_out_keys": d.held},
        "heldout_paragraphs": len(d.heldout),
        "tokens": {"tokenizer": model_dir.name, **stats.histogram(lengths)},
        "keyword_coverage": stats.keyword_coverage(spec.curate.keywords, d.kept, d.train + d.evals),
        "equations": {"kept_paragraphs": stats.math_counts(kept_texts), "examples": stats.math_counts(example_texts)},
        "code_blocks_in_examples": sum(t.count("```") // 2 for t in example_texts),
    }


def write_dataset(out: Path, d: Curated, st: dict, info: dict) -> str:
    """Write the dataset folder so it appears complete or not at all (curate-info.json last); returns its
    sha256. `info` gets the dataset hash added."""
    def fill(tmp: Path) -> list[str]:
        write_parquet(d.train, EXAMPLE_SCHEMA, tmp / "train.parquet")
        write_parquet(d.evals, EXAMPLE_SCHEMA, tmp / "eval.parquet")
        write_parquet(d.heldout, HELDOUT_SCHEMA, tmp / "heldout.parquet")
        write_parquet(d.paragraphs, PARAGRAPH_SCHEMA, tmp / "paragraphs.parquet")
        write_parquet(d.catalogue, CATALOGUE_SCHEMA, tmp / "catalogue.parquet")
        (tmp / "stats.json").write_text(json.dumps(st, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
        info["dataset_sha256"] = dataset_sha256(tmp)
        (tmp / "curate-info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return [*DATA_FILES, "curate-info.json"]

    write_folder(out, fill)
    return info["dataset_sha256"]


def explain_only(spec: BuildSpec, sources: list[Path] | None = None) -> str:
    """The --explain listing without writing a dataset."""
    return explain_listing(make_dataset(spec, *read_documents(spec, sources)))


def curate(spec: BuildSpec, out: Path, sources: list[Path] | None = None, quiet: bool = False,
           explain: bool = False) -> dict:
    """Run the stage; returns stats.json's content. Refuses to write into a folder that already has files."""
    t0 = time.perf_counter()
    out = Path(out)
    if not is_empty_or_absent(out):
        raise CurateError(f"output folder {out} is not empty; curate never overwrites a dataset: choose a new "
                          f"folder or remove this one")
    model_dir = resolve_base_model(spec)  # first: fail fast; BaseModelUnavailable carries its own fix
    d = make_dataset(spec, *read_documents(spec, sources))
    st = dataset_stats(spec, d, model_dir)
    seconds = time.perf_counter() - t0
    info = {"stage": "curate", "seconds": round(seconds, 3), "versions": library_versions(),
            "sources": [{"path": p, "sha256": h, "bytes": b} for p, h, b in source_files(d.docs)],
            "spec": spec.to_dict()}
    digest = write_dataset(out, d, st, info)
    if explain:
        print(explain_listing(d))
    if not quiet:
        print(stats.summary(st, out, seconds, digest))
    return st
