"""The retrieval arms of eval: base + retrieval and adapter + retrieval beside eval's base and adapter arms.

Each question is sent to the build's index (jobs/core/retrieval/hybrid.py); the top `retrieval.k` passages that fit the
model's context (the context less the question, the system prompt and eval.max_new_tokens) go into the shared
prompt layout (jobs/core/retrieval/rag.py). Per retrieval arm: every per-answer metric with bootstrap intervals (as the
two plain arms), right / abstention / false abstention rates, citation precision (cited passages quoting one of
the question's source paragraph ids / cited passages, over answerable questions with ids that cite anything) and
the unsupported-claim rate of each answer against the passages it was given. Retrieval itself: recall@1, @5 and
MRR per topic on the suite's paragraph ids. The section opens with the arm that wins each topic (right rate, then
concept recall) and the arm to ship (best overall right rate).
"""

from __future__ import annotations

import time

import numpy as np

from jobs.core.engine.generation import Engine
from jobs.core.retrieval.rag import arm_uses_adapter, cited, fit_passages, user_turn
from jobs.core.spec.metrics import ARM_PREFIX, ARMS, PER_QUESTION, RETRIEVAL_ARMS
from jobs.core.retrieval.hybrid import Index
from jobs.core.retrieval.recall import Query, first_rank, summarize
from jobs.core.spec.suite import Suite
from jobs.eval import bootstrap, diagnose, faithfulness, generate, scoring

PROMPT_OVERHEAD_TOKENS = 48  # chat template markers, the instruction line and the "Passages:" header


def given_passages(engine: Engine, index: Index, suite: Suite, k: int, system: str | None,
                   max_new_tokens: int) -> tuple[list[list], list[int | None], list]:
    """Per question: the passages put in its prompt, the rank of its first source paragraph, the ranked hits."""
    count = lambda text: len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    given, ranks, rankings = [], [], []
    for q in suite.questions:
        order, _ = index.ranking(q.question, "hybrid")
        hits = [index.passages[i] for i in order[:k]]
        budget = engine.context - max_new_tokens - count(q.question + (system or "")) - PROMPT_OVERHEAD_TOKENS
        given.append(fit_passages(hits, budget, count))
        ranks.append(first_rank([index.passages[i].ids for i in order], tuple(q.paragraphs)) if q.paragraphs
                     else None)
        rankings.append(hits)
    return given, ranks, rankings


def answer_arms(engine: Engine, suite: Suite, given: list[list], system: str | None, max_new_tokens: int) -> tuple:
    prompts = [user_turn(q.question, g) for q, g in zip(suite.questions, given)]
    answers, timing = {}, {}
    for arm in RETRIEVAL_ARMS:
        answers[arm], timing[arm] = generate.answer(engine, prompts, system_prompt=system,
                                                    adapter="adapter" if arm_uses_adapter(arm) else None,
                                                    max_new_tokens=max_new_tokens)
    prompt_tokens = [len(ids) for ids in engine.prompt_ids(generate.conversations(prompts, system))]
    plain_tokens = [len(ids) for ids in engine.prompt_ids(generate.conversations(
        [q.question for q in suite.questions], system))]
    timing["prompt_tokens"] = {"with_retrieval": float(np.mean(prompt_tokens)),
                               "without": float(np.mean(plain_tokens))}
    return answers, timing


def _side(g, q, similarity: float, max_new_tokens: int) -> dict:
    side = scoring.score_answer(g.text, q.reference, q.concepts, similarity)
    side.update(scoring.generation_stats(g.text, g.new_tokens, g.stopped, max_new_tokens))
    side["answer"] = g.text
    return side


def _citation_precision(answer: str, passages: list, wanted: tuple[str, ...]) -> float | None:
    cites = cited(answer, passages)
    if not cites or not wanted:
        return None
    return sum(bool(set(p.ids) & set(wanted)) for p in cites) / len(cites)


def score_arms(rows: list[dict], suite: Suite, answers: dict, given: list[list], embed, max_new_tokens: int) -> None:
    """Adds row[arm] for each retrieval arm (the plain arms' rows are eval's own), in place."""
    refs = [q.reference for q in suite.questions]
    for arm in RETRIEVAL_ARMS:
        texts = [g.text for g in answers[arm]]
        sims = scoring.similarities(texts, refs, embed)
        faith = faithfulness.check(texts, [[p.text for p in g] for g in given], embed)
        for i, (row, q) in enumerate(zip(rows, suite.questions)):
            side = _side(answers[arm][i], q, sims[i], max_new_tokens)
            side["faithfulness"] = faith[i]
            side["cited"] = [p.id for p in cited(texts[i], given[i])]
            side["citation_precision"] = _citation_precision(texts[i], given[i], tuple(q.paragraphs))
            row[arm] = side
    for row, g in zip(rows, given):
        row["passages"] = [{"id": p.id, "paragraph_ids": list(p.ids), "locator": p.locator()} for p in g]


def _mean(values: list) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def _arm_rates(rows: list[dict], arm: str) -> dict:
    answerable = [r for r in rows if r["expect"] == "answer"]
    absent = [r for r in rows if r["expect"] == "abstain"]
    out = {"right_rate": _mean([float(diagnose.is_right(r[arm], "answer")) for r in answerable]),
           "abstention_rate": _mean([float(diagnose.abstains(r[arm]["answer"])) for r in absent]),
           "false_abstention_rate": _mean([float(diagnose.abstains(r[arm]["answer"])) for r in answerable])}
    if arm in RETRIEVAL_ARMS:
        out["citation_precision"] = _mean([r[arm]["citation_precision"] for r in answerable])
        checked = [r[arm]["faithfulness"] for r in answerable if r[arm]["faithfulness"]["checked"]]
        claims = sum(f["claims"] for f in checked)
        out["unsupported_rate"] = sum(f["unsupported"] for f in checked) / claims if claims else float("nan")
    return out


def summarise_arms(rows: list[dict], ranks: list[int | None], suite: Suite, samples: int, seed: int,
                   timing: dict) -> dict:
    """The `arms` section of metrics.json and the headline keys of the retrieval arms (ARM_PREFIX)."""
    names = PER_QUESTION + ("stop_rate", "repetition_rate")
    answerable = [r for r in rows if r["expect"] == "answer"]

    def values(sub, arm, k):
        if k == "stop_rate":
            return [float(r[arm]["stopped"]) for r in sub]
        return [r[arm]["repetition" if k == "repetition_rate" else k] for r in sub]

    overall = {arm: {k: bootstrap.bootstrap_mean(values(answerable, arm, k), samples, seed) for k in names}
               | {k: {"mean": v} for k, v in _arm_rates(rows, arm).items()} for arm in ARMS}
    topics = {}
    for topic in sorted({r["topic"] for r in answerable}):
        sub = [r for r in rows if r["topic"] == topic]
        per_arm = {arm: {"concept_recall": bootstrap.bootstrap_mean(values([r for r in sub if r["expect"] == "answer"],
                                                                           arm, "concept_recall"), samples, seed),
                         **{k: {"mean": v} for k, v in _arm_rates(sub, arm).items()}} for arm in ARMS}
        best = max(ARMS, key=lambda a: (_nan0(per_arm[a]["right_rate"]["mean"]),
                                        _nan0(per_arm[a]["concept_recall"]["mean"])))
        topics[topic] = {"questions": len(sub), "winner": best, "arms": per_arm}
    ship = max(ARMS, key=lambda a: (_nan0(overall[a]["right_rate"]["mean"]),
                                    _nan0(overall[a]["concept_recall"]["mean"])))
    queries = [Query(q.id, q.question, q.topic, tuple(q.paragraphs), q.expect) for q in suite.questions]
    recall = summarize(list(zip(queries, ranks)))
    headline = {}
    for arm in RETRIEVAL_ARMS:
        prefix = ARM_PREFIX[arm]
        headline.update({prefix + k: overall[arm][k]["mean"] for k in names})
        headline.update({prefix + k: v["mean"] for k, v in overall[arm].items() if k not in names})
    headline.update({f"retrieval_{k.replace('@', '_at_')}": v for k, v in recall["overall"].items()
                     if k != "questions"})
    return {"ship": ship, "winners": {t: v["winner"] for t, v in topics.items()}, "overall": overall,
            "topics": topics, "retrieval": recall, "timing": timing, "headline": headline}


def _nan0(value: float) -> float:
    return -1.0 if value is None or value != value else value


def generate_arms(engine: Engine, index: Index, suite: Suite, *, k: int, system: str | None,
                  max_new_tokens: int) -> dict:
    """Retrieve and answer with both retrieval arms while the engine is loaded; scored later by `finish`."""
    start = time.perf_counter()
    given, ranks, _ = given_passages(engine, index, suite, k, system, max_new_tokens)
    answers, timing = answer_arms(engine, suite, given, system, max_new_tokens)
    timing["seconds"] = time.perf_counter() - start
    return {"given": given, "ranks": ranks, "answers": answers, "timing": timing}


def finish(rows: list[dict], suite: Suite, state: dict, embed, *, max_new_tokens: int, samples: int,
           seed: int) -> dict:
    score_arms(rows, suite, state["answers"], state["given"], embed, max_new_tokens)
    return summarise_arms(rows, state["ranks"], suite, samples, seed, state["timing"])
