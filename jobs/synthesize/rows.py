"""Candidates to example rows: the MiniLM similarity filter, the chat messages with their provenance, eval
leakage and near duplicates (the last filters, see filters.py)."""

from __future__ import annotations

from jobs.core.spec.audiences import audience_prompt
from jobs.core.store.dataset_folder import example_id
from jobs.core.text.embed import EmbedderUnavailable, load_embedder
from jobs.core.text.leakage import LeakageCheck, all_suites, leakage
from jobs.core.text.neardup import dedup
from jobs.synthesize.plan import Candidate
from jobs.synthesize import SynthesisError

WRITTEN = ("fact-qa", "paraphrase")  # free text from the writer; a cloze is the source's sentence


def _source(p: dict) -> str:
    return "\n\n".join([c["text"] for c in p["before"]] + [p["text"]] + [c["text"] for c in p["after"]])


def off_topic(spec, found: list[Candidate], rejected) -> list[Candidate]:
    """Drop written answers whose MiniLM cosine to their paragraph with context is under min_similarity."""
    written = [c for c in found if c.kind in WRITTEN]
    if not written:  # nothing to compare: the embedder is not even loaded
        return found
    try:
        from jobs.core.engine.loading import pick_device

        embed = load_embedder(str(pick_device("auto")))
    except EmbedderUnavailable as exc:
        raise SynthesisError(f"the synthesis filters compare meanings with MiniLM: {exc} (extra synthesize)") from None
    sims = (embed([c.answer for c in written]) * embed([_source(c.p) for c in written])).sum(axis=1)
    low = {id(c): float(s) for c, s in zip(written, sims) if s < spec.synthesize.min_similarity}
    for c in written:
        if id(c) in low:
            rejected("off_topic", c.kind, c.p, f"similarity {low[id(c)]:.2f} < {spec.synthesize.min_similarity}",
                     c.question + "\n" + c.answer)
    return [c for c in found if id(c) not in low]


def row(spec, c: Candidate, writer: str) -> dict:
    p = c.p
    system = " ".join(s for s in (spec.curate.system_prompt, c.audience and audience_prompt(c.audience, p["language"]))
                      if s)
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": c.question}, {"role": "assistant", "content": c.answer}]
    context = [] if c.kind == "fact-cloze" else [x["id"] for x in p["before"] + p["after"]]
    return {"id": example_id(messages), "messages": messages, "template": c.kind,
            "origin": "paraphrase" if c.kind == "paraphrase" else "synthetic", "writer": writer,
            "source_path": p["source_path"], "source_sha256": p["source_sha256"], "section": p["section"],
            "paragraph_ids": [p["id"], *context], "keywords": list(p["keywords"]), "fact": c.fact}


def screen(spec, found: list[Candidate], writer: str, rejected) -> list[dict]:
    """The examples that pass every filter, sorted by id; each rejection is reported to `rejected`."""
    rows = sorted((row(spec, c, writer) for c in off_topic(spec, found, rejected)), key=lambda r: r["id"])
    by_id = {r["id"]: r for r in rows}
    rows, leaked = leakage(rows, LeakageCheck(all_suites(spec.eval.suite), spec.curate.near_duplicate_threshold))
    for r in leaked:
        rejected("leakage", by_id[r["id"]]["template"], None, f"near copy of {r['suite']}/{r['eval_question']} "
                 f"({r['field']}, overlap {r['overlap']})", by_id[r["id"]]["messages"][-2]["content"],
                 r["paragraph_ids"][0])
    text = lambda r: "\n".join(m["content"] for m in r["messages"] if m["role"] != "system")  # noqa: E731
    rows, dups = dedup(rows, text, lambda r: r["id"], spec.curate.near_duplicate_threshold)
    for d in dups:
        r = by_id[d["id"]]
        rejected("near_duplicate", r["template"], None, f"{d['kind']} duplicate of example {d['duplicate_of']}",
                 text(r), r["paragraph_ids"][0])
    return rows
