"""The synthesis stage: a curated dataset folder in, the same folder with synthetic examples added to its
training split out. Held-out sections never reach a writer, so the eval split stays unseen.

read the curated folder -> phase 1 (facts, paraphrases) -> phase 2 (cloze choices, K Q&A per fact) -> text
filters -> similarity -> leakage -> near duplicates -> train.parquet + stats.json + synthesize-info.json.
Every reply comes through the cache, so the same inputs give a byte-identical folder and no writer call.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from jobs.core.store.dataset_folder import (DATA_FILES, EXAMPLE_SCHEMA, dataset_sha256, is_empty_or_absent,
    DatasetError, read_rows, read_table, write_folder, write_parquet)
from jobs.core.engine.basemodel import resolve_base_model
from jobs.core.store.provenance import library_versions
from jobs.core.spec.schema import BuildSpec
from jobs.core.store.backends import open_store
from jobs.core.engine.writers import make_writer
from jobs.synthesize import SynthesisError, plan, summary
from jobs.synthesize.cache import GenerationCache
from jobs.synthesize.rows import screen
from jobs.synthesize import raft

COPIED = ("eval.parquet", "heldout.parquet", "paragraphs.parquet", "catalogue.parquet", "curate-info.json")


def read_curated(folder: Path) -> dict:
    missing = [n for n in (*DATA_FILES, "curate-info.json") if not (folder / n).is_file()]
    if missing:
        raise DatasetError(f"{folder} is not a curated dataset folder: {', '.join(missing)} missing. Pass the "
                           f"folder that `python -m jobs.curate --out` wrote (curate from this version writes "
                           f"paragraphs.parquet and catalogue.parquet)")
    return {"paragraphs": read_table(folder, "paragraphs.parquet"), "train": read_table(folder, "train.parquet"),
            "stats": json.loads((folder / "stats.json").read_text(encoding="utf-8")),
            "info": json.loads((folder / "curate-info.json").read_text(encoding="utf-8"))}


def training_paragraphs(spec: BuildSpec, paragraphs: list[dict]) -> list[dict]:
    chosen = sorted((p for p in paragraphs if p["split"] == "train"), key=lambda p: p["id"])
    return chosen[:spec.synthesize.max_paragraphs] if spec.synthesize.max_paragraphs else chosen


def generate(spec: BuildSpec, paragraphs: list[dict], writer, cache: GenerationCache, rejected):
    """Both phases through the cache: (candidates, facts, requests made, replies generated)."""
    reqs, what = plan.first_requests(spec, paragraphs)
    replies, generated = cache.replies(reqs, writer)
    facts = plan.read_facts(what, replies, rejected)
    reqs2, what2 = plan.second_requests(spec, facts)
    replies2, generated2 = cache.replies(reqs2, writer)
    found = plan.candidates(spec, what + what2, replies + replies2, facts, rejected)
    return found, facts, len(reqs) + len(reqs2), generated + generated2


def _token_counter(spec: BuildSpec):
    """Tokens of a text under the base model's tokenizer (RAFT fits its passages into train.max_length)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(resolve_base_model(spec) / "tokenizer.json"))
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def synthesize(spec: BuildSpec, dataset: Path, out: Path, quiet: bool = False) -> dict:
    """Run the stage; returns the stats.json written. Refuses an output folder that already has files."""
    t0 = time.perf_counter()
    dataset, out = Path(dataset), Path(out)
    if spec.synthesize is None:
        raise SynthesisError(f"{spec.source_file} has no synthesize section: add one (see data/builds/v2.yaml) "
                             f"or train on the curated folder directly")
    if not is_empty_or_absent(out):
        raise SynthesisError(f"output folder {out} is not empty; synthesize never overwrites a dataset: choose a "
                             f"new folder or remove this one")
    curated = read_curated(dataset)
    paragraphs = training_paragraphs(spec, curated["paragraphs"])
    writer = make_writer(spec, resolve_base_model(spec) if spec.synthesize.writer.kind == "engine" else None)
    cache = GenerationCache(open_store(), writer.name)
    rejected = summary.Rejections()
    found, facts, requests, generated = generate(spec, paragraphs, writer, cache, rejected)
    rows = screen(spec, found, writer.name, rejected)
    st = summary.stats(spec, curated, paragraphs, facts, rows, rejected, writer.name, requests)
    if spec.synthesize.raft is not None:  # RAFT examples over curate's and the synthetic questions (raft.py)
        made, st["raft"] = raft.examples(spec, read_rows(dataset / "catalogue.parquet"), curated["train"] + rows,
                                         _token_counter(spec))
        rows += made
        ex = st["examples"]
        ex["train"] += len(made)
        ex["by_template"][raft.TEMPLATE] = len(made)
        ex["train_by_origin"]["synthetic"] = ex["train_by_origin"].get("synthetic", 0) + len(made)
    train = sorted(curated["train"] + rows, key=lambda r: r["id"])
    info = {"stage": "synthesize", "versions": library_versions(), "writer": writer.name, "writer_note": writer.note,
            "calls": {"requests": requests, "generated": generated, "cached": requests - generated},
            "curated_dataset_sha256": curated["info"].get("dataset_sha256"), "spec": spec.to_dict()}

    def fill(tmp: Path) -> list[str]:
        for name in COPIED:
            shutil.copyfile(dataset / name, tmp / name)
        write_parquet(train, EXAMPLE_SCHEMA, tmp / "train.parquet")
        (tmp / "stats.json").write_text(json.dumps(st, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
        info["dataset_sha256"] = dataset_sha256(tmp)
        info["seconds"] = round(time.perf_counter() - t0, 3)
        (tmp / "synthesize-info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return [*DATA_FILES, "curate-info.json", "synthesize-info.json"]

    write_folder(out, fill)
    if not quiet:
        print(summary.summary(st, info, out))
    return st
