"""Knowledge diagnostics as pure functions: what the adapter learned, forgot, never got, and where to add data.

Every judgement uses the named thresholds below; the report prints them ("right" means ...), so a reader can
check each verdict against the numbers beside it.

- right: an answerable question is answered right when the answer names at least RIGHT_CONCEPT_RECALL of the
  expected concepts, its MiniLM similarity to the reference is at least RIGHT_SIMILARITY, and it does not
  abstain. An `expect: abstain` item is answered right when the answer abstains.
- the four outcomes of an answerable question, from the base model's and the adapter's verdicts (Gekhman et al.
  2024's known / unknown categories, at eval time): base knew it (both right), learned (adapter right, base
  wrong), forgotten (base right, adapter wrong), never right (both wrong).
- abstains: the answer's first sentence (the first two when the first is one or two words: "I'm sorry.") says
  that it does not know or that the documents do not hold the answer (one of ABSTAIN_PHRASES, English or
  Spanish). An answer that answers first and declines a detail later does not abstain.
"""

from __future__ import annotations

import math
import re
import unicodedata

from jobs.core.spec.metrics import DIAGNOSTICS, WITH_BASE
from jobs.eval import scoring

RIGHT_CONCEPT_RECALL = 0.5  # share of the expected concepts a right answer names
RIGHT_SIMILARITY = 0.6  # MiniLM cosine to the reference a right answer reaches (unrelated text: ~0.1-0.3)
LOW_LEARNED_RATE = 0.5  # a topic that learned less than this share of what the base did not know needs data
ABSTAIN_PHRASES = (
    "i don't know", "i do not know", "i'm not sure", "i am not sure", "i am not aware", "i'm not aware",
    "not mentioned", "not covered", "not stated", "not specified", "not discussed", "not provided",
    "no information", "no mention", "cannot find", "can't find", "could not find", "couldn't find",
    "does not say", "do not say", "doesn't say", "don't say", "does not contain", "do not contain",
    "doesn't contain", "don't contain", "does not report", "do not report", "not reported",
    "cannot answer", "can't answer", "unable to answer", "not in the documents", "not in the provided",
    "no lo sé", "no sé", "no se menciona", "no aparece", "no hay información", "no contiene", "no dicen",
)
OUTCOMES = ("knew", "learned", "forgotten", "never")
OUTCOME_LABELS = {"knew": "base knew it", "learned": "learned", "forgotten": "forgotten", "never": "never right"}
MODELS = ("adapter", "base")


def abstains(answer: str) -> bool:
    """Does the answer decline (it does not know, the documents do not say) in its first sentences?"""
    text = unicodedata.normalize("NFKC", answer).replace("’", "'").lower()
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    # The first sentence decides; a short opener ("I'm sorry.") hands over to the next one.
    opening = " ".join(sentences[:2] if len(sentences[0].split()) < 3 else sentences[:1])
    return any(phrase in opening for phrase in ABSTAIN_PHRASES)


def is_right(side: dict, expect: str) -> bool:
    """One model's verdict on one question (side: its answer and scores, as metrics.json stores them)."""
    if expect == "abstain":
        return abstains(side["answer"])
    return (not abstains(side["answer"]) and side["concept_recall"] >= RIGHT_CONCEPT_RECALL
            and side["similarity"] >= RIGHT_SIMILARITY)


def outcome(base_right: bool, adapter_right: bool) -> str:
    if base_right:
        return "knew" if adapter_right else "forgotten"
    return "learned" if adapter_right else "never"


def judge(rows: list[dict]) -> None:
    """Add `right` and `abstained` to each model's side of every row, and `outcome` to answerable rows."""
    for r in rows:
        expect = r.get("expect", "answer")  # reports written before `expect` existed hold answerable rows only
        for m in MODELS:
            r[m]["abstained"] = abstains(r[m]["answer"])
            r[m]["right"] = is_right(r[m], expect)
        r["outcome"] = outcome(r["base"]["right"], r["adapter"]["right"]) if expect == "answer" else None


def outcome_table(rows: list[dict]) -> dict:
    """{"overall": {outcome: [ids]}, "topics": {topic: {outcome: [ids]}}} over answerable rows."""
    def empty():
        return {o: [] for o in OUTCOMES}
    table = {"overall": empty(), "topics": {}}
    for r in rows:
        if r["outcome"] is None:
            continue
        table["overall"][r["outcome"]].append(r["id"])
        table["topics"].setdefault(r["topic"], empty())[r["outcome"]].append(r["id"])
    table["topics"] = dict(sorted(table["topics"].items()))
    return table


def _share(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


def learned_rate(counts: dict) -> float:
    """Of the questions the base got wrong, the share the adapter gets right."""
    return _share(len(counts["learned"]), len(counts["learned"]) + len(counts["never"]))


def forgotten_rate(counts: dict) -> float:
    """Of the questions the base got right, the share the adapter gets wrong."""
    return _share(len(counts["forgotten"]), len(counts["forgotten"]) + len(counts["knew"]))


def headline(rows: list[dict], unsupported: dict, probes: dict) -> dict:
    """The diagnostics' flat metrics: adapter, base_ and delta_ where the base has its own value."""
    answerable = [r for r in rows if r.get("expect", "answer") == "answer"]
    absent = [r for r in rows if r.get("expect") == "abstain"]
    out = {}
    for m, prefix in (("adapter", ""), ("base", "base_")):
        out[prefix + "right_rate"] = _share(sum(r[m]["right"] for r in answerable), len(answerable))
        out[prefix + "abstention_rate"] = _share(sum(r[m]["abstained"] for r in absent), len(absent))
        out[prefix + "false_abstention_rate"] = _share(sum(r[m]["abstained"] for r in answerable), len(answerable))
        out[prefix + "unsupported_rate"] = unsupported[m]
        out[prefix + "train_verbatim_right"] = probes[m]["verbatim"]
        out[prefix + "train_reworded_right"] = probes[m]["reworded"]
    for k in WITH_BASE:
        out["delta_" + k] = out[k] - out["base_" + k]
    counts = outcome_table(rows)["overall"]
    out["learned_rate"], out["forgotten_rate"] = learned_rate(counts), forgotten_rate(counts)
    return out


def question_diff(previous: list[dict], current: list[dict]) -> dict:
    """Questions the previous build answered right and this one does not ("lost"), and the reverse ("gained"),
    each with both answers; verdicts recomputed with this version's thresholds so old reports compare too."""
    before = {r["id"]: r for r in previous}
    lost, gained, same_right, same_wrong = [], [], 0, 0
    for r in current:
        old = before.get(r["id"])
        if old is None:
            continue
        expect = r.get("expect", "answer")
        was, now = is_right(old["adapter"], expect), is_right(r["adapter"], expect)
        item = {"id": r["id"], "topic": r["topic"], "question": r["question"], "expect": expect,
                "previous": _side_summary(old["adapter"]), "current": _side_summary(r["adapter"])}
        if was and not now:
            lost.append(item)
        elif now and not was:
            gained.append(item)
        else:
            same_right, same_wrong = same_right + (was and now), same_wrong + (not was and not now)
    ids = {r["id"] for r in current}
    return {"lost": lost, "gained": gained, "still_right": same_right, "still_wrong": same_wrong,
            "new_questions": sorted(ids - before.keys()), "dropped_questions": sorted(before.keys() - ids)}


def _side_summary(side: dict) -> dict:
    return {"answer": side["answer"], "concept_recall": side["concept_recall"], "similarity": side["similarity"]}


def topic_keywords(questions: list[dict], keywords: list[str]) -> list[str]:
    """The spec's curate keywords a topic's questions, references or concepts mention (normalised words)."""
    text = scoring.normalise(" ".join(q["question"] + " " + q["reference"] + " " + " ".join(q.get("concepts", []))
                                      for q in questions))
    return [k for k in keywords if scoring.contains(text, scoring.normalise(k))]


def where_to_add_data(rows: list[dict], outcomes: dict, stats: dict, keywords: list[str]) -> dict:
    """Per topic whose learned rate is below LOW_LEARNED_RATE: its keyword coverage, the source paragraphs of its
    questions with the training examples each fed, and the synthesis step's fact coverage when it ran."""
    coverage = stats.get("keyword_coverage", {})
    out = []
    for topic, counts in outcomes["topics"].items():
        rate = learned_rate(counts)
        if math.isnan(rate) or rate >= LOW_LEARNED_RATE:
            continue
        qs = [r for r in rows if r["topic"] == topic and r["outcome"] is not None]
        paragraphs = {}
        for r in qs:
            for p in r["sources"]["paragraphs"]:
                paragraphs.setdefault(p["id"], {k: p[k] for k in ("id", "split", "train_examples")} | {"questions": []})
                paragraphs[p["id"]]["questions"].append(r["id"])
        out.append({
            "topic": topic, "learned_rate": rate, "learned": len(counts["learned"]), "never": len(counts["never"]),
            "questions": [r["id"] for r in qs if r["outcome"] == "never"],
            "keywords": [{"keyword": k, **coverage.get(k, {"examples": 0, "paragraphs": 0})}
                         for k in topic_keywords([{"question": r["question"], "reference": r["reference"],
                                                   "concepts": r.get("concepts", [])} for r in qs], keywords)],
            "paragraphs": sorted(paragraphs.values(), key=lambda p: (p["train_examples"], p["id"])),
            "no_sources": [r["id"] for r in qs if not r["sources"]["paragraphs"]],
            "missing_references": sorted({i for r in qs for i in r["sources"]["missing"]}),
        })
    # The synthesis step's fact coverage (stats.json `fact_coverage`), for the build as a whole, where it ran.
    return {"topics": out, "fact_coverage": stats.get("fact_coverage")}
