"""The eval stage as one function: dataset + adapter (+ previous report) in, report folder out.

Phases, one function each: read_inputs validates everything cheap (suite, adapter folder, the suite's paragraph
ids against the build's documents) before a model loads; answer runs the model (the suite with the adapter and with
the base alone from one loaded base, held-out NLL, the probes, the retrieval arms); score computes the scores with
their intervals, the knowledge diagnostics and the arms; write_report applies the gate and writes metrics.json,
gate.json, answers.jsonl and report.html; run_eval ties them together and writes eval-info.json.

metrics.json (for machines; every float may be null where it cannot be computed):
    headline      flat {metric: float}: concept_recall, similarity, rougeL, bleu, perplexity, stop_rate,
                  repetition_rate, mean_new_tokens, and the diagnostics right_rate, abstention_rate,
                  false_abstention_rate, unsupported_rate, train_verbatim_right, train_reworded_right; the same
                  with base_ (adapter disabled) and delta_ (adapter - base) prefixes; learned_rate and
                  forgotten_rate (no base twin). Publish copies it into the manifest.
    overall       {adapter|base|delta: {metric: {mean, low, high}}}   95% bootstrap intervals over questions
    perplexity    {adapter|base: {mean, low, high}, paragraphs, tokens}   over heldout.parquet
    topics        {topic: {questions, adapter: {...}, base: {...}}}   (answerable questions; abstain items apart)
    questions     per question: id, topic, source, expect, question, reference, concepts, outcome, sources
                  {how, paragraphs (each with its index rank), missing} (sources.py); adapter/base: answer, scores,
                  right, abstained, faithfulness
    diagnostics   thresholds, outcomes {overall, topics: {outcome: [ids]}}, faithfulness, abstention, probes
                  {summary, rows}, where_to_add_data (see diagnose.py, faithfulness.py, probes.py)
    diff          against the previous build: lost / gained questions with both answers (null without one)
    suite, gate, tag, previous_tag, previous {tag, path, headline}
    generation    {path, note}: which generation path produced the answers (engine.path, engine.path_note)
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs.core.engine.generation import Engine, EngineSettings, Sampling
from jobs.core.retrieval.hybrid import INFO, Index
from jobs.core.store.provenance import library_versions
from jobs.core.spec.metrics import PER_QUESTION
from jobs.core.spec.schema import BuildSpec
from jobs.core.spec.suite import Suite, load_suite
from jobs.core.text.embed import load_embedder
from jobs.eval import (EvalError, arms, bootstrap, dataset, diagnose, faithfulness, generate, probes, scoring, sources,
                       trust)
from jobs.eval.gate import evaluate_gate
from jobs.eval.report import render_report

MODELS = diagnose.MODELS
WORST_ANSWERS = 5


def _prepare_out(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        raise EvalError(f"{out_dir}: report folder is not empty; eval never overwrites a report. "
                        f"Pass a new --out folder (or delete this one)")
    out_dir.mkdir(parents=True, exist_ok=True)


def read_previous(previous_dir: Path | None) -> dict | None:
    if previous_dir is None:
        return None
    path = Path(previous_dir) / "metrics.json"
    if not path.is_file():
        raise EvalError(f"{path}: --previous must be a previous build's report folder (with metrics.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def score_rows(suite: Suite, answers: dict, embed, max_new_tokens: int) -> list[dict]:
    """One row per question with the adapter's and the base's answer and every per-answer score."""
    refs = [q.reference for q in suite.questions]
    sims = {m: scoring.similarities([g.text for g in answers[m]], refs, embed) for m in MODELS}
    rows = []
    for i, q in enumerate(suite.questions):
        row = {"id": q.id, "topic": q.topic, "source": q.source, "expect": q.expect, "question": q.question,
               "reference": q.reference, "concepts": [c.name for c in q.concepts], "paragraphs": list(q.paragraphs)}
        for m in MODELS:
            g = answers[m][i]
            scores = scoring.score_answer(g.text, q.reference, q.concepts, sims[m][i])
            scores.update(scoring.generation_stats(g.text, g.new_tokens, g.stopped, max_new_tokens))
            scores["answer"] = g.text
            scores["quality"] = scoring.answer_quality(scores)
            row[m] = scores
        rows.append(row)
    return rows


def _values(rows: list[dict], model: str, metric: str) -> list[float]:
    if metric == "stop_rate":
        return [float(r[model]["stopped"]) for r in rows]
    if metric == "repetition_rate":
        return [r[model]["repetition"] for r in rows]
    return [r[model][metric] for r in rows]


def summarise(rows: list[dict], nll: dict, samples: int, seed: int) -> dict:
    """Overall and per-topic means with bootstrap intervals, perplexity, and the flat headline."""
    names = PER_QUESTION + ("stop_rate", "repetition_rate")
    overall = {m: {k: bootstrap.bootstrap_mean(_values(rows, m, k), samples, seed) for k in names} for m in MODELS}
    overall["delta"] = {k: bootstrap.bootstrap_delta(_values(rows, "adapter", k), _values(rows, "base", k), samples, seed)
                        for k in names}
    ppl = {m: bootstrap.bootstrap_perplexity([n for n, _ in nll[m]], [t for _, t in nll[m]], samples, seed)
           for m in MODELS}
    topics = {}
    for topic in sorted({r["topic"] for r in rows}):
        sub = [r for r in rows if r["topic"] == topic]
        topics[topic] = {"questions": len(sub)} | {
            m: {k: bootstrap.bootstrap_mean(_values(sub, m, k), samples, seed) for k in names} for m in MODELS}
    headline = {}
    for m, prefix in (("adapter", ""), ("base", "base_")):
        headline.update({prefix + k: overall[m][k]["mean"] for k in names})
        headline[prefix + "perplexity"] = ppl[m]["mean"]
        headline[prefix + "mean_new_tokens"] = float(np.mean([r[m]["new_tokens"] for r in rows]))
    for k in names + ("perplexity",):
        headline["delta_" + k] = headline[k] - headline["base_" + k]
    perplexity = ppl | {"paragraphs": len(nll["adapter"]), "tokens": int(sum(t for _, t in nll["adapter"]))}
    return {"headline": headline, "overall": overall, "perplexity": perplexity, "topics": topics}


def add_diagnostics(rows: list[dict], suite: Suite, paragraphs: list[dict], embed, index: Index | None,
                    probe_rows: list[dict], keywords: list[str], stats: dict, previous: dict | None) -> dict:
    """Verdicts, sources (ranked by the build's index, where it has one), faithfulness and outcomes on the rows
    (in place); the diagnostics section and diff."""
    diagnose.judge(rows)
    found = sources.question_sources(list(suite.questions), paragraphs, index)
    for r, src in zip(rows, found):
        r["sources"] = src
    text = {p["id"]: p["text"] for p in paragraphs}
    texts = [[text[p["id"]] for p in r["sources"]["paragraphs"]] for r in rows]
    # Both models in one call, so each source sentence is embedded once.
    checked = faithfulness.check([r[m]["answer"] for m in MODELS for r in rows], texts * len(MODELS), embed)
    for i, m in enumerate(MODELS):
        for r, f in zip(rows, checked[i * len(rows):(i + 1) * len(rows)]):
            r[m]["faithfulness"] = f
    outcomes = diagnose.outcome_table(rows)
    faith = faithfulness.summary(rows)
    absent = [r for r in rows if r["expect"] == "abstain"]
    return {
        "thresholds": {"right_concept_recall": diagnose.RIGHT_CONCEPT_RECALL,
                       "right_similarity": diagnose.RIGHT_SIMILARITY, "low_learned_rate": diagnose.LOW_LEARNED_RATE,
                       "support_similarity": faithfulness.SUPPORT_SIMILARITY,
                       "min_claim_words": faithfulness.MIN_CLAIM_WORDS, "memorised_gap": probes.MEMORISED_GAP,
                       "not_taken_in": probes.NOT_TAKEN_IN},
        "outcomes": outcomes, "faithfulness": faith,
        "abstention": {"items": [r["id"] for r in absent], "answerable": len(rows) - len(absent)},
        "probes": {"summary": probes.summary(probe_rows, rows), "rows": probe_rows},
        "where_to_add_data": diagnose.where_to_add_data(rows, outcomes, stats, keywords),
        "diff": None if previous is None else diagnose.question_diff(previous.get("questions", []), rows),
    }


def ask_probes(engine: Engine, examples: list[dict], embed, max_new_tokens: int) -> list[dict]:
    """The sampled training questions, as trained and reworded, through the engine (the adapter by its name)."""
    def chat(conversations: list[list[dict]], adapter: bool, tokens: int) -> list:
        return engine.chat(conversations, "adapter" if adapter else None, Sampling(max_new_tokens=tokens))
    return probes.run(examples, chat, embed, max_new_tokens)


def _json_safe(value):
    # NaN/inf are not JSON; write null so every reader (jq, JavaScript, the manifest) can parse the file.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(_json_safe(data), indent=2, sort_keys=False, allow_nan=False) + "\n", encoding="utf-8")


def load_index(index_dir: Path | None, embed) -> Index | None:
    """The build's retrieval index (None without one): what the retrieval arms and the source lookup rank with."""
    if index_dir is None:
        return None
    if not (Path(index_dir) / INFO).is_file():
        raise EvalError(f"{index_dir}: no retrieval index there, and the spec's `retrieval:` section asks for the "
                        f"retrieval arms; build it with python -m jobs.index and pass it as --index")
    return Index.load(index_dir, embedders={"minilm": embed})  # the MiniLM eval already loaded


def _retrieval_arms(spec: BuildSpec, engine: Engine, index: Index, suite: Suite, system: str | None) -> dict:
    """Answers of the retrieval arms (the build has an index)."""
    k = spec.retrieval.k if spec.retrieval else 4
    print(f"eval: retrieval arms: {len(index.passages)} passages, top {k} per question in the prompt", flush=True)
    return arms.generate_arms(engine, index, suite, k=k, system=system, max_new_tokens=spec.eval.max_new_tokens)


@dataclass
class Inputs:
    """Everything eval reads before it loads a model: checked first, so a bad suite or folder costs seconds."""

    suite: Suite
    previous: dict | None
    suite_notes: list
    heldout: list[str]
    system: str | None
    paragraphs: list[dict]
    examples: list[dict]
    stats: dict


@dataclass
class Answers:
    """What the model produced: each side's answers to the suite, held-out NLL, probe answers, retrieval arms; the
    embedder and the build's index (None without one), which scoring reuses."""

    answers: dict
    generation: dict
    nll: dict
    probe_rows: list[dict]
    retrieval: dict | None
    device: str
    embed: object
    index: Index | None


def read_inputs(spec: BuildSpec, dataset_dir: Path, adapter_dir: Path, previous_dir: Path | None) -> Inputs:
    suite = load_suite(spec.eval.suite)  # bounded at load: jobs.core.spec.suite.MAX_QUESTIONS and LIMITS
    n = len(suite.questions)
    print(f"eval: suite {suite.name}: {n} questions, each answered by the adapter and by the base model with up "
          f"to {spec.eval.max_new_tokens} new tokens (at most {2 * n * spec.eval.max_new_tokens:,})", flush=True)
    previous = read_previous(previous_dir)
    suite_notes = trust.check_suite(suite, dataset_dir)  # a suite about other documents is refused here
    if not (adapter_dir / "adapter_config.json").is_file():
        raise EvalError(f"{adapter_dir}: not an adapter folder (no adapter_config.json); "
                        f"pass the train stage's --out folder as --adapter")
    return Inputs(suite, previous, suite_notes, dataset.heldout_texts(dataset_dir), dataset.system_prompt(dataset_dir),
                  dataset.source_paragraphs(dataset_dir),
                  probes.sample(dataset.training_examples(dataset_dir), spec.eval.train_questions, spec.eval.seed),
                  dataset.stats(dataset_dir))


def answer(spec: BuildSpec, adapter_dir: Path, index_dir: Path | None, i: Inputs, timings: dict) -> Answers:
    """The one phase that runs the model: the suite by the adapter and by the base from the same loaded weights,
    held-out NLL, the probes, and (with an index) the retrieval arms."""
    t = time.perf_counter()
    engine = Engine.load(spec, {"adapter": adapter_dir}, EngineSettings(
        device=spec.eval.device, batch_size=spec.eval.batch_size, memory_budget_gib=spec.train.memory_budget_gib,
        cpu_threads=spec.eval.cpu_threads))
    print(f"eval: answers by the {engine.path} generation path: {engine.path_note}", flush=True)
    timings["load_s"] = time.perf_counter() - t
    questions = [q.question for q in i.suite.questions]
    kw = {"system_prompt": i.system, "max_new_tokens": spec.eval.max_new_tokens}
    answers, generation, nll = {}, {"path": engine.path, "note": engine.path_note}, {}
    answers["adapter"], generation["adapter"] = generate.answer(engine, questions, adapter="adapter", **kw)
    took = generation["adapter"]
    print(f"eval: the adapter answered {len(questions)} questions in {took['seconds']:.0f} s; the base model answers "
          f"next, in about {took['seconds'] - took.get('compile_s', 0.0):.0f} s", flush=True)
    t = time.perf_counter()
    nll["adapter"] = engine.nll(i.heldout, "adapter")
    timings["perplexity_s"] = time.perf_counter() - t
    # The base alone from the same loaded weights: the adapter switched off (or unmerged), no reload.
    answers["base"], generation["base"] = generate.answer(engine, questions, adapter=None, **kw)
    nll["base"] = engine.nll(i.heldout, None)
    embed = load_embedder(engine.device)
    index = load_index(index_dir, embed)
    t = time.perf_counter()
    probe_rows = ask_probes(engine, i.examples, embed, spec.eval.max_new_tokens)
    timings["probes_s"] = time.perf_counter() - t
    retrieval = None if index is None else _retrieval_arms(spec, engine, index, i.suite, i.system)
    return Answers(answers, generation, nll, probe_rows, retrieval, engine.device, embed, index)


def score(spec: BuildSpec, i: Inputs, a: Answers, timings: dict) -> tuple[list[dict], dict, dict, list[dict]]:
    """(rows, summary, diagnostics, worst answers): scores with intervals, the knowledge diagnostics, the arms."""
    t = time.perf_counter()
    rows = score_rows(i.suite, a.answers, a.embed, spec.eval.max_new_tokens)
    answerable = [r for r in rows if r["expect"] == "answer"]  # abstain items count only in the abstention rates
    summary = summarise(answerable, a.nll, spec.eval.bootstrap_samples, spec.eval.seed)
    diagnostics = add_diagnostics(rows, i.suite, i.paragraphs, a.embed, a.index, a.probe_rows,
                                  list(spec.curate.keywords), i.stats, i.previous)
    summary["headline"].update(diagnose.headline(rows, {m: diagnostics["faithfulness"][m]["rate"] for m in MODELS},
                                                 diagnostics["probes"]["summary"]))
    if a.retrieval is not None:  # the four arms (jobs/eval/arms.py): metrics.json `arms`, rag_ headline keys
        summary["arms"] = arms.finish(rows, i.suite, a.retrieval, a.embed, max_new_tokens=spec.eval.max_new_tokens,
                                      samples=spec.eval.bootstrap_samples, seed=spec.eval.seed)
        summary["headline"].update(summary["arms"].pop("headline"))
    worst = sorted(answerable, key=lambda r: (r["adapter"]["quality"], r["id"]))[:WORST_ANSWERS]
    timings["score_s"] = time.perf_counter() - t
    return rows, summary, diagnostics, worst


def write_report(spec: BuildSpec, out_dir: Path, i: Inputs, a: Answers, scored: tuple, previous_dir: Path | None,
                 adapter_dir: Path) -> dict:
    """Apply the gate; write metrics.json, gate.json, answers.jsonl and report.html; returns the gate result."""
    rows, summary, diagnostics, worst = scored
    previous = i.previous
    gate = evaluate_gate(spec.eval.gate, summary["headline"], previous["headline"] if previous else None)
    suite = i.suite
    result = {
        "stage": "eval", "tag": spec.name,
        "suite": {"name": suite.name, "path": suite.path, "sha256": suite.sha256, "questions": len(suite.questions)},
        **summary,
        "previous_tag": None if previous is None else previous.get("tag"),
        "previous": None if previous is None else {"tag": previous.get("tag"), "path": str(previous_dir),
                                                  "headline": previous["headline"]},
        "gate": gate, "diff": diagnostics.pop("diff"), "diagnostics": diagnostics, "questions": rows,
        "generation": {"path": a.generation["path"], "note": a.generation["note"]},
        "base_model": spec.base_model.id, "trust": trust.summary(spec, suite, rows, i.suite_notes, previous),
    }
    for note in result["trust"]["notes"]:
        print(f"eval: note: {note}", flush=True)
    _write_json(out_dir / "metrics.json", result)
    _write_json(out_dir / "gate.json", gate)
    with open(out_dir / "answers.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"id": r["id"], "topic": r["topic"], "expect": r["expect"], "outcome": r["outcome"],
                                "question": r["question"], "reference": r["reference"],
                                "adapter": r["adapter"]["answer"],
                                "base": r["base"]["answer"], "adapter_stopped": r["adapter"]["stopped"],
                                "base_stopped": r["base"]["stopped"]}, ensure_ascii=False) + "\n")
    render_report(out_dir / "report.html", result, worst=worst, adapter_dir=adapter_dir, dataset_stats=i.stats,
                  spec=spec, paragraph_text={p["id"]: p["text"] for p in i.paragraphs})
    return gate


def run_eval(spec: BuildSpec, dataset_dir: Path, adapter_dir: Path, out_dir: Path,
             previous_dir: Path | None = None, index_dir: Path | None = None) -> dict:
    """Evaluate and write the report folder, phase by phase; returns the gate result ({"passed", "checks"})."""
    start, timings = time.perf_counter(), {}
    dataset_dir, adapter_dir, out_dir = Path(dataset_dir), Path(adapter_dir), Path(out_dir)
    inputs = read_inputs(spec, dataset_dir, adapter_dir, previous_dir)
    _prepare_out(out_dir)
    answers = answer(spec, adapter_dir, index_dir, inputs, timings)
    gate = write_report(spec, out_dir, inputs, answers, score(spec, inputs, answers, timings), previous_dir,
                        adapter_dir)
    timings["seconds"] = time.perf_counter() - start
    _write_json(out_dir / "eval-info.json", {
        "stage": "eval", "seconds": timings["seconds"], "timings": timings, "versions": library_versions(),
        "device": answers.device, "generation": answers.generation, "system_prompt": inputs.system,
        "inputs": {"dataset": str(dataset_dir), "adapter": str(adapter_dir),
                   "previous": None if previous_dir is None else str(previous_dir), "suite": inputs.suite.path},
        "spec": spec.to_dict(),
    })
    return gate
