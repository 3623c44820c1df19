"""Faithfulness: is each sentence an answer states supported by the source paragraphs of its question?

A claim is a sentence of at least MIN_CLAIM_WORDS words, or one that states a number, symbol or equation, and
that does not abstain. A claim is supported when some sentence of the sources has a MiniLM cosine similarity of
at least SUPPORT_SIMILARITY to it, and every number, symbol and equation it states appears in the sources
(jobs.core.text.grounding). The unsupported-claim rate is unsupported claims / claims, over answers whose question
has source paragraphs (an answer without sources is listed as not checked, never counted as faithful).
The embedder is passed in (texts -> unit vectors), so this stays testable with MiniLM loaded once.
"""

from __future__ import annotations

import math
import re

import numpy as np

from jobs.core.text.embed import Embedder
from jobs.core.text.grounding import absent
from jobs.eval.diagnose import MODELS, abstains

SUPPORT_SIMILARITY = 0.5  # MiniLM cosine: a paraphrase of a source sentence scores ~0.6-0.9, a new claim < 0.5
MIN_CLAIM_WORDS = 4
FENCE = re.compile(r"```.*?(?:```|$)", re.S)  # code is not a claim about the documents
BLOCKS = re.compile(r"\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)")  # paragraphs and list items
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9$\\(¿¡\"'])")


def sentences(text: str) -> list[str]:
    """The sentences of an answer or a paragraph, whitespace collapsed, code blocks left out."""
    out = []
    for block in BLOCKS.split(FENCE.sub("\n\n", text)):
        block = " ".join(block.split())
        out += [s for s in SENTENCE_END.split(block) if s.strip()]
    return out


def is_claim(sentence: str) -> bool:
    states_value = bool(absent(sentence, []))  # any number, symbol or equation at all
    return (len(sentence.split()) >= MIN_CLAIM_WORDS or states_value) and not abstains(sentence)


def check(answers: list[str], sources: list[list[str]], embed: Embedder) -> list[dict]:
    """Per answer: {checked, claims, unsupported, sentences: [{text, claim, similarity, absent, supported}]}."""
    split = [sentences(a) for a in answers]
    source_sentences = [[s for p in srcs for s in sentences(p)] for srcs in sources]
    unique = sorted({s for ss in split for s in ss} | {s for ss in source_sentences for s in ss})
    vectors = dict(zip(unique, embed(unique))) if unique else {}
    results = []
    for parts, srcs, src_sents in zip(split, sources, source_sentences):
        checked = bool(src_sents)
        matrix = np.stack([vectors[s] for s in src_sents]) if checked else None
        rows = []
        for s in parts:
            claim = is_claim(s)
            row = {"text": s, "claim": claim, "similarity": None, "absent": [], "supported": None}
            if claim and checked:
                row["similarity"] = float(np.max(matrix @ vectors[s]))
                row["absent"] = absent(s, srcs)
                row["supported"] = row["similarity"] >= SUPPORT_SIMILARITY and not row["absent"]
            rows.append(row)
        claims = [r for r in rows if r["claim"]]
        results.append({"checked": checked, "claims": len(claims),
                        "unsupported": sum(r["supported"] is False for r in claims), "sentences": rows})
    return results


def _rate(results: list[dict]) -> dict:
    checked = [f for f in results if f["checked"]]
    claims, unsupported = sum(f["claims"] for f in checked), sum(f["unsupported"] for f in checked)
    return {"rate": unsupported / claims if claims else math.nan, "claims": claims, "unsupported": unsupported,
            "answers": len(checked)}


def summary(rows: list[dict]) -> dict:
    """Unsupported-claim rate per model, overall and per topic, over answerable questions."""
    answerable = [r for r in rows if r["expect"] == "answer"]
    out = {"not_checked": [r["id"] for r in answerable if not r["adapter"]["faithfulness"]["checked"]]}
    for m in MODELS:
        out[m] = _rate([r[m]["faithfulness"] for r in answerable])
        out[m]["topics"] = {t: _rate([r[m]["faithfulness"] for r in answerable if r["topic"] == t])
                            for t in sorted({r["topic"] for r in answerable})}
    return out
