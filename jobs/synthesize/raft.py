"""RAFT examples (Zhang et al. 2024, arXiv 2403.10131): training the adapter to answer from retrieved passages.

For each training-side paragraph (catalogue `split: train`, never held-out text) up to `per_paragraph` of its
training questions become examples in the shared prompt layout (jobs/core/retrieval/rag.py): the question with the oracle
paragraph and `distractors` passages that the build's own retriever ranks highest for the question (the index
built from training-side paragraphs only, with the spec's `retrieval.embedders`), in a seeded order. The answer
is the example's own answer, then the oracle's sentence that shares most words with it, quoted and cited by its
number. A stated fraction (`without_oracle`) of examples holds distractors only, answered with NOT_COVERED: the
model learns to say the passages do not answer rather than invent. Examples whose passages do not fit
train.max_length (with the answer) lose distractors first; one whose oracle alone does not fit is left out.
"""

from __future__ import annotations

import hashlib
import random
import re
import tempfile
from pathlib import Path

from jobs.core.store.dataset_folder import example_id
from jobs.core.retrieval.rag import NOT_COVERED, fit_passages, user_turn
from jobs.core.retrieval.hybrid import Index, Passage, load_passage_embedder, load_query_embedder, write_index
from jobs.core.spec.schema import BuildSpec

TEMPLATE = "raft"
QUESTION_TEMPLATES = ("fact-qa", "explain", "define", "relate", "researcher", "engineer")  # user turn asks something
CHAT_OVERHEAD_TOKENS = 48  # the chat template's markers and the instruction line
MAX_QUOTE_CHARS = 300


def _turns(row: dict) -> tuple[str | None, str, str]:
    by_role = {m["role"]: m["content"] for m in row["messages"]}
    return by_role.get("system"), by_role.get("user", ""), by_role.get("assistant", "")


def _quote(oracle: Passage, answer: str) -> str:
    words = set(re.findall(r"\w+", answer.lower()))
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", oracle.text) if s.strip()] or [oracle.text]
    best = max(sentences, key=lambda s: (len(words & set(re.findall(r"\w+", s.lower()))), -len(s)))
    return best if len(best) <= MAX_QUOTE_CHARS else best[:MAX_QUOTE_CHARS].rsplit(" ", 1)[0] + " ..."


def _index(spec: BuildSpec, catalogue: list[dict], folder: Path) -> Index:
    names = spec.retrieval.embedders
    write_index([r for r in catalogue if r["split"] == "train"], folder,
                {n: load_passage_embedder(n) for n in names})
    return Index.load(folder, {n: load_query_embedder(n) for n in names})


def examples(spec: BuildSpec, catalogue: list[dict], train: list[dict], count_tokens) -> tuple[list[dict], dict]:
    """(RAFT rows in the dataset folder's example schema, counts for stats.json)."""
    raft = spec.synthesize.raft
    with tempfile.TemporaryDirectory(prefix="raft-index-") as tmp:
        index = _index(spec, catalogue, Path(tmp) / "index")
        train_side = {pid for pid in index.by_paragraph}
        chosen: dict[str, list[dict]] = {}
        for row in sorted(train, key=lambda r: r["id"]):
            pid = row["paragraph_ids"][0] if row["paragraph_ids"] else None
            if row["template"] in QUESTION_TEMPLATES and pid in train_side and \
                    len(chosen.setdefault(pid, [])) < raft.per_paragraph:
                chosen[pid].append(row)
        out, counts = [], {"examples": 0, "without_oracle": 0, "too_long": 0, "paragraphs": len(chosen)}
        for pid, rows in sorted(chosen.items()):
            for row in rows:
                made = _example(spec, index, pid, row, count_tokens)
                if made is None:
                    counts["too_long"] += 1
                    continue
                out.append(made)
                counts["examples"] += 1
                counts["without_oracle"] += made["messages"][-1]["content"] == NOT_COVERED
    return out, counts


def _example(spec: BuildSpec, index: Index, pid: str, row: dict, count_tokens) -> dict | None:
    raft = spec.synthesize.raft
    system, question, answer = _turns(row)
    rng = random.Random(int(hashlib.sha256(f"{raft.seed}:{row['id']}".encode()).hexdigest()[:16], 16))
    with_oracle = rng.random() >= raft.without_oracle
    oracle = index.passages[index.by_paragraph[pid][0]]
    ranked = [index.passages[i] for i in index.ranking(question, "hybrid")[0][:raft.distractors + 8]]
    distractors = [p for p in ranked if pid not in p.ids][:raft.distractors + (0 if with_oracle else 1)]
    reply = f'{answer}\n\nAs passage [{{n}}] puts it: "{_quote(oracle, answer)}" [{{n}}]' if with_oracle \
        else NOT_COVERED
    budget = (spec.train.max_length - count_tokens((system or "") + question + reply) - CHAT_OVERHEAD_TOKENS)
    passages = fit_passages(([oracle] if with_oracle else []) + distractors, budget, count_tokens)
    if (with_oracle and oracle not in passages) or not passages:  # never a bare question answered NOT_COVERED
        return None
    rng.shuffle(passages)
    if with_oracle:
        reply = reply.replace("{n}", str(passages.index(oracle) + 1))
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user_turn(question, passages)}, {"role": "assistant", "content": reply}]
    return {"id": example_id(messages), "messages": messages, "template": TEMPLATE, "origin": "synthetic",
            "writer": f"raft (retriever: bm25+{'+'.join(spec.retrieval.embedders)})",
            "source_path": row["source_path"], "source_sha256": row["source_sha256"], "section": row["section"],
            "paragraph_ids": [pid] + [i for p in passages if p is not oracle for i in p.ids],
            "keywords": list(row["keywords"])}
