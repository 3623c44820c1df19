"""Open an index (a build's, a folder, or built here) and run questions through it (python -m jobs.retrieve)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from jobs.core.errors import QslmError
from jobs.core.engine.basemodel import cache_dir
from jobs.core.retrieval.hybrid import Index, RetrievalError
from jobs.core.retrieval.recall import Query, first_rank, load_questions, summarize
from jobs.core.repo import REPO_ROOT


def _from_store(tag: str) -> Path:
    from jobs.core.store.registry import fetch_artifact, read_manifest
    from jobs.core.store.backends import open_store

    store = open_store()
    manifest = read_manifest(store, tag)
    if "index" not in manifest.get("artifacts", {}):
        raise RetrievalError(f"build {tag} has no retrieval index (built before it existed, or its spec has no "
                             f"`retrieval:` section); rebuild it, or use --spec with its sources")
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir() / "retrieve" / f"{tag}-{digest}" / "index"
    if not (folder / "index.json").is_file():
        fetch_artifact(store, tag, "index", folder)  # every file checked against the manifest
    return folder


def _stage(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, stdout=sys.stderr)  # stdout: results only
    if done.returncode:
        raise RetrievalError(f"python -m {args[0]} failed (exit {done.returncode}); its error is above")


def _from_documents(spec: str, sources: list[Path] | None) -> Path:
    """curate then index, cached by the spec, the source paths and their contents."""
    h = hashlib.sha256(Path(spec).read_bytes())
    for root in sources or []:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            h.update(str(f.resolve()).encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    folder = cache_dir() / "retrieve" / f"docs-{h.hexdigest()[:16]}"
    if (folder / "index" / "index.json").is_file():
        return folder / "index"
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=folder.parent))
    try:
        _stage(["jobs.curate", "--spec", spec, "--out", str(work / "dataset")]
               + (["--sources", *map(str, sources)] if sources else []))
        _stage(["jobs.index", "--spec", spec, "--dataset", str(work / "dataset"), "--out", str(work / "index")])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(work / "index", folder / "index")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder / "index"


def open_index(*, tag=None, index=None, dataset=None, spec=None, sources=None) -> Index:
    if tag:
        return Index.load(_from_store(tag))
    if index:
        return Index.load(index)
    if dataset:
        from jobs.core.spec.schema import RetrievalSpec
        from jobs.core.retrieval.hybrid import load_passage_embedder, write_index
        import pyarrow.parquet as pq

        catalogue = dataset / "catalogue.parquet"
        if not catalogue.is_file():
            raise RetrievalError(f"{catalogue}: no catalogue; curate the dataset again with this version")
        folder = Path(tempfile.mkdtemp(prefix="retrieve-index-"))
        names = RetrievalSpec().embedders
        write_index(pq.read_table(catalogue).to_pylist(), folder, {n: load_passage_embedder(n) for n in names})
        return Index.load(folder)
    return Index.load(_from_documents(spec, sources))


def _row(index: Index, q: Query, k: int, method: str) -> tuple[dict, int | None]:
    order, scores = index.ranking(q.question, method)
    rank = first_rank([index.passages[i].ids for i in order], q.paragraphs) if q.paragraphs else None
    from jobs.core.retrieval.hybrid import Hit

    hits = [Hit(index.passages[i], float(s), r).to_dict() for r, (i, s) in
            enumerate(zip(order[:k], scores[:k]), start=1)]
    return {"id": q.id, "question": q.question, "topic": q.topic, "paragraphs": list(q.paragraphs),
            "rank": rank, "hits": hits}, rank


def _text(row: dict) -> str:
    head = f"[{row['id']}] {row['question']}" + (f"  (source at rank {row['rank']})" if row["paragraphs"] else "")
    lines = [head]
    for h in row["hits"]:
        snippet = " ".join(h["text"].split())
        where = h["file"] + (f" > {h['section']}" if h["section"] else "") + (f", p. {h['page']}" if h["page"] else "")
        lines.append(f"  {h['rank']}. {h['score']:.4f}  {h['id']}\n     {where}\n     {snippet[:200]}"
                     f"{'...' if len(snippet) > 200 else ''}")
    return "\n".join(lines)


def run(index: Index, query: str | None, questions: Path | None, k: int, method: str, as_json: bool) -> dict:
    items = [Query("query", query)] if query is not None else load_questions(questions)
    ranks = []
    for q in items:
        row, rank = _row(index, q, k, method)
        ranks.append((q, rank))
        print(json.dumps(row, ensure_ascii=False) if as_json else _text(row) + "\n", flush=True)
    summary = summarize(ranks)
    if summary["overall"]:
        if as_json:
            print(json.dumps({"summary": summary}))
        else:
            print(format_summary(summary, method))
    return summary


def format_summary(summary: dict, method: str) -> str:
    lines = [f"{'topic':<20} {'questions':>9} {'recall@1':>9} {'recall@5':>9} {'MRR':>6}   ({method})"]
    for name, s in [*summary["topics"].items(), ("overall", summary["overall"])]:
        lines.append(f"{name:<20} {s['questions']:>9} {s['recall@1']:>9.2f} {s['recall@5']:>9.2f} {s['mrr']:>6.2f}")
    return "\n".join(lines)


__all__ = ["open_index", "run", "QslmError"]
