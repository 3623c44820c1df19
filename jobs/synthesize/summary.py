"""The synthesis section of stats.json (fact coverage, examples by kind, every filter with its count and
samples) and the summary printed at the end of a run. Nothing here depends on timing or on the cache, so a
rerun writes the same stats.json."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from jobs.synthesize.filters import FILTERS
from jobs.synthesize.prompts import PROMPT_VERSION, units

SAMPLES = 3  # rejected replies kept per filter in stats.json, for a human to judge the filter
SAMPLE_CHARS = 300


class Rejections:
    """Collects every rejected reply: rejections(filter, kind, paragraph, why, reply[, paragraph_id])."""

    def __init__(self):
        self.items: dict[str, list[dict]] = {f: [] for f in FILTERS}

    def __call__(self, filter_: str, kind: str, p: dict | None, why: str, reply: str, pid: str = "") -> None:
        self.items[filter_].append({"kind": kind, "paragraph_id": p["id"] if p else pid, "why": why,
                                    "reply": reply[:SAMPLE_CHARS]})

    def table(self) -> dict:
        out = {}
        for f, items in self.items.items():
            items = sorted(items, key=lambda x: (x["paragraph_id"], x["kind"], x["why"], x["reply"]))
            out[f] = {"count": len(items), "by_kind": dict(sorted(Counter(x["kind"] for x in items).items())),
                      "samples": items[:SAMPLES]}
        return out


def stats(spec, curated: dict, paragraphs: list[dict], facts: list[tuple[dict, int]], rows: list[dict],
          rejected: Rejections, writer: str, requests: int) -> dict:
    """stats.json: the curated stats with the training count updated and a `synthesis` section."""
    k = spec.synthesize.questions_per_fact
    per_fact = Counter((r["paragraph_ids"][0], r["fact"]) for r in rows if r["fact"] is not None)
    with_rows = {r["paragraph_ids"][0] for r in rows}
    without = sorted(p["id"] for p in paragraphs if p["id"] not in with_rows)
    kinds = Counter(r["template"] for r in rows)
    st = {**curated["stats"]}
    examples = dict(st["examples"])
    examples["train"] = len(curated["train"]) + len(rows)
    examples["by_template"] = dict(sorted((Counter(examples["by_template"]) + kinds).items()))
    origins = Counter(r["origin"] for r in curated["train"] + rows)
    examples["train_by_origin"] = dict(sorted(origins.items()))
    st["examples"] = examples
    # the flat mapping eval's "where to add data" shows as written (docs/architecture.md, stats.json)
    st["fact_coverage"] = {"facts": len(facts), "questions_per_fact": k, "facts_with_k_questions": sum(
        1 for p, j in facts if per_fact[(p["id"], j)] >= k), "facts_with_no_question": sum(
        1 for p, j in facts if per_fact[(p["id"], j)] == 0), "paragraphs": len(paragraphs),
        "paragraphs_with_no_example": len(without)}
    st["synthesis"] = {
        "writer": writer, "prompt_version": PROMPT_VERSION, "requests": requests,
        "paragraphs": len(paragraphs), "sentences": sum(len(units(p["text"])) for p in paragraphs),
        "facts": {"found": len(facts), "questions_per_fact": k,
                  "with_k_kept_questions": st["fact_coverage"]["facts_with_k_questions"],
                  "with_no_kept_question": st["fact_coverage"]["facts_with_no_question"]},
        "paragraphs_with_no_example": {"count": len(without), "ids": without},
        "examples": dict(sorted(kinds.items())), "added": len(rows),
        "rejected": rejected.table(),
    }
    return st


def summary(st: dict, info: dict, out: Path) -> str:
    y = st["synthesis"]
    f, calls = y["facts"], info["calls"]
    lines = [
        f"synthesize: {y['paragraphs']} training paragraphs, writer {y['writer']} ({info['writer_note'] or '-'}) "
        f"in {info['seconds']:.1f} s",
        f"  requests:  {calls['requests']} ({calls['cached']} cached, {calls['generated']} generated)",
        f"  facts:     {f['found']} found in {y['sentences']} sentences; {f['with_k_kept_questions']} with >= "
        f"{f['questions_per_fact']} kept questions, {f['with_no_kept_question']} with none; paragraphs with no "
        f"surviving example: {y['paragraphs_with_no_example']['count']} of {y['paragraphs']}",
        f"  examples:  +{y['added']} (" + (", ".join(f"{k} {n}" for k, n in y["examples"].items()) or "none")
        + f"); train now {st['examples']['train']} ("
        + ", ".join(f"{k} {n}" for k, n in st["examples"]["train_by_origin"].items()) + ")",
        "  rejected:  " + ", ".join(f"{name} {v['count']}" for name, v in y["rejected"].items()),
        f"  wrote {out} (dataset sha256 {info['dataset_sha256'][:16]}...)",
    ]
    return "\n".join(lines)
