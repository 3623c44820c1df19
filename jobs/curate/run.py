"""The curate stage: documents in, a dataset folder out (see docs/architecture.md, "Dataset folder").

parse -> select (keywords, optional MiniLM, overrides) -> dedup paragraphs -> examples -> dedup examples ->
cap -> split by section -> leakage check against the eval suite -> parquet + stats.json + curate-info.json.
The same inputs and spec give byte-identical data files: everything is sorted and nothing time-dependent goes
into them (seconds go only into curate-info.json).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.core.model import resolve_base_model
from jobs.core.provenance import library_versions
from jobs.core.spec import BuildSpec
from jobs.core.suite import load_suite
from jobs.curate import dedup, examples, select, split, stats
from jobs.curate.blocks import CurateError
from jobs.curate.documents import load_documents

EXAMPLE_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    ("template", pa.string()), ("source_path", pa.string()), ("source_sha256", pa.string()),
    ("section", pa.string()), ("paragraph_ids", pa.list_(pa.string())), ("keywords", pa.list_(pa.string())),
])
HELDOUT_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("source_path", pa.string()),
                            ("section", pa.string())])
DATA_FILES = ("train.parquet", "eval.parquet", "heldout.parquet", "stats.json")


def write_parquet(rows: list[dict], schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, compression="zstd", write_statistics=False)


def dataset_sha256(folder: Path) -> str:
    h = hashlib.sha256()
    for name in DATA_FILES:
        h.update(name.encode() + b"\0" + hashlib.sha256((folder / name).read_bytes()).hexdigest().encode() + b"\n")
    return h.hexdigest()


@dataclass
class Curated:
    """What the selection and example phases produce: the dataset's rows and the why of every decision."""

    docs: list
    skipped: list[dict]
    ignored: list[str]
    counts: Counter
    selected: list
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


def read_documents(spec: BuildSpec, sources: list[Path] | None) -> tuple[list, list[dict], list[str]]:
    source_dirs = [Path(s) for s in (sources or spec.curate.sources)]
    docs, skipped, ignored = load_documents(source_dirs, spec.curate.on_bad_input)
    if not docs:
        raise CurateError(f"no readable documents (.tex .md .rst .pdf .txt) under {', '.join(map(str, source_dirs))}"
                          + (f"; {len(skipped)} skipped as bad input" if skipped else ""))
    return docs, skipped, ignored


def make_dataset(spec: BuildSpec, docs: list, skipped: list[dict], ignored: list[str]) -> Curated:
    """select -> dedup paragraphs -> examples -> dedup examples -> cap -> split by section -> leakage."""
    c = spec.curate
    suite = load_suite(spec.eval.suite)
    counts: Counter = Counter()
    selected = select.select(docs, c, suite, counts)
    kept, dup_paragraphs = dedup.dedup_paragraphs(selected, lambda s: s.paragraph.text, lambda s: s.paragraph.id,
                                                  c.near_duplicate_threshold)
    rows = [r for s in kept for r in examples.make_examples(s, c.templates, c.system_prompt, c.seed)]
    rows, dup_examples = dedup.dedup_examples(rows)
    rows.sort(key=lambda r: r["id"])
    capped = max(0, len(rows) - c.max_examples)
    rows = rows[:c.max_examples]
    train, evals, held = split.split_by_section(rows, c.eval_fraction, c.seed)
    train, leaked = dedup.leakage(train, suite, c.near_duplicate_threshold)
    if not train:
        raise CurateError(f"no training examples: {sum(len(d.paragraphs) for d in docs)} paragraphs in {len(docs)} "
                          f"documents, {len(selected)} selected ({dict(counts)}), {len(leaked)} removed as copies "
                          f"of eval answers. Check curate.keywords and curate.min_paragraph_chars in "
                          f"{spec.source_file}, or the sources")
    held_set = set(held)
    heldout = sorted(({"id": p.id, "text": p.text, "source_path": p.file, "section": p.section}
                      for d in docs for p in d.paragraphs
                      if p.kind in ("prose", "caption") and p.id.rsplit("#p", 1)[0] in held_set),
                     key=lambda r: r["id"])
    return Curated(docs, skipped, ignored, counts, selected, kept, dup_paragraphs, dup_examples, capped, rows,
                   train, evals, held, leaked, heldout)


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
        },
        "examples": {
            "train": len(d.train), "eval": len(d.evals),
            "by_template": dict(sorted(Counter(r["template"] for r in d.train + d.evals).items())),
            "duplicates_removed": d.dup_examples, "capped": d.capped,
            "leakage_removed": len(d.leaked), "leakage": d.leaked,
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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        write_parquet(d.train, EXAMPLE_SCHEMA, tmp / "train.parquet")
        write_parquet(d.evals, EXAMPLE_SCHEMA, tmp / "eval.parquet")
        write_parquet(d.heldout, HELDOUT_SCHEMA, tmp / "heldout.parquet")
        (tmp / "stats.json").write_text(json.dumps(st, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
        info["dataset_sha256"] = digest = dataset_sha256(tmp)
        (tmp / "curate-info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if out.exists():  # empty (checked before), perhaps a mount point: move the files, curate-info.json last
            for name in DATA_FILES + ("curate-info.json",):
                shutil.move(tmp / name, out / name)  # copies when out is another file system
            tmp.rmdir()
        else:
            tmp.rename(out)  # the dataset folder appears all at once
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return digest


def curate(spec: BuildSpec, out: Path, sources: list[Path] | None = None, quiet: bool = False) -> dict:
    """Run the stage; returns stats.json's content. Refuses to write into a folder that already has files."""
    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
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
    if not quiet:
        print(stats.summary(st, out, seconds, digest))
    return st
