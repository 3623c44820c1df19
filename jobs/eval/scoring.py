"""Answer metrics as plain, pure functions: text (and numbers) in, scores out.

Why plain functions and not local `evaluate` modules: the hub metrics cannot be downloaded here, and a local
`evaluate` module is a script loaded by path that wraps exactly the calls below (sacrebleu, rouge-score) while
adding a dependency (`evaluate` is not in the eval image), a loader and per-call overhead. Plain functions are
testable with hand-made strings, show their arithmetic, and import the same way in the image, the tests and
the benchmark.

Every score is in [0, 1] with 1 best, except perplexity (>= 1, lower is better) and repetition (0 best).
Semantic similarity needs an embedder; it is passed in as a function (texts -> unit vectors) so the scoring
stays pure and tests can load MiniLM once (`jobs.core.text.embed.load_embedder`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from typing import Sequence

import numpy as np

from jobs.core.text.embed import Embedder
from jobs.core.spec.suite import Concept


REPEAT_NGRAM = 4  # words; a 4-gram said twice is a loop, not style
REPEAT_CHARS = 16  # characters; long enough that reusing a term ("quantum kernel ") is not a loop
REPEAT_FLAG = 0.2  # share of repeated n-grams above which an answer is flagged as repetitive


# ---------------------------------------------------------------- expected concepts


def _stem(word: str) -> str:
    # Light plural folding so "feature maps" matches "feature map"; leaves short words and "-ss" alone.
    if len(word) > 6 and word.endswith("rices"):  # matrices -> matrix
        return word[:-4] + "ix"
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def normalise(text: str) -> list[str]:
    """Lower-case words without accents, punctuation or plural -s: 'Feature-Maps,' -> ['feature', 'map']."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return [_stem(w) for w in re.findall(r"[a-z0-9]+", text)]


def contains(words: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(words[i:i + n] == phrase for i in range(len(words) - n + 1))


def concept_hits(answer: str, concepts: Sequence[Concept]) -> list[bool]:
    """For each concept: does the answer say its name or one of its synonyms (as whole words)?"""
    words = normalise(answer)
    return [any(contains(words, normalise(form)) for form in c.forms) for c in concepts]


def concept_recall(answer: str, concepts: Sequence[Concept]) -> float:
    """Share of expected concepts the answer mentions (synonym-aware, normalised)."""
    hits = concept_hits(answer, concepts)
    return sum(hits) / len(hits) if hits else 0.0


# ---------------------------------------------------------------- similarity and overlap


def similarities(answers: Sequence[str], references: Sequence[str], embed: Embedder) -> list[float]:
    """Cosine similarity of each answer to its reference, clipped to [0, 1] (negative means unrelated)."""
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers but {len(references)} references")
    if not answers:
        return []
    a, r = embed(answers), embed(references)
    cos = np.sum(a * r, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(r, axis=1) + 1e-12)
    # An empty answer has no meaning to compare; MiniLM still embeds it, so score it 0 explicitly.
    return [0.0 if not ans.strip() else float(np.clip(c, 0.0, 1.0)) for ans, c in zip(answers, cos)]


def bleu(answer: str, reference: str) -> float:
    """Sentence BLEU (sacrebleu, exponential smoothing) scaled to [0, 1]."""
    import sacrebleu

    if not answer.strip():
        return 0.0
    return sacrebleu.sentence_bleu(answer, [reference]).score / 100.0


_ROUGE = None


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge-score, Porter stemming)."""
    global _ROUGE
    from rouge_score import rouge_scorer

    if _ROUGE is None:  # building the scorer loads the stemmer; once per process is enough
        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return _ROUGE.score(reference, answer)["rougeL"].fmeasure


# ---------------------------------------------------------------- stopping and repetition


def repeated_ngram_share(items: Sequence, n: int) -> float:
    """Share of the n-grams of `items` (words or characters) that repeat an earlier one (0 = none)."""
    grams = [tuple(items[i:i + n]) for i in range(len(items) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(Counter(grams)) / len(grams)


def repetition(text: str) -> float:
    """How much the answer loops: the larger of repeated word 4-grams and repeated 16-character n-grams.

    Words catch 'is a kernel is a kernel ...'; characters catch loops inside one 'word' ('rororororo'), which
    sub-word models produce. A fluent answer that reuses a term scores well under REPEAT_FLAG on both."""
    words = text.lower().split()
    chars = " ".join(words)
    return max(repeated_ngram_share(words, REPEAT_NGRAM), repeated_ngram_share(chars, REPEAT_CHARS))


def generation_stats(text: str, new_tokens: int, stopped: bool, max_new_tokens: int) -> dict:
    """How the answer ended: did it stop on its own, was it cut at the limit, does it loop?"""
    loops = repetition(text)
    truncated = (not stopped) and new_tokens >= max_new_tokens
    return {
        "new_tokens": new_tokens,
        "stopped": bool(stopped),
        "truncated": bool(truncated),
        "repetition": loops,
        "repetitive": loops > REPEAT_FLAG,
        "flagged": bool(truncated or loops > REPEAT_FLAG or not text.strip()),
    }


# ---------------------------------------------------------------- perplexity and the per-answer row


def perplexity(nll_sum: float, tokens: int) -> float:
    """exp(mean negative log-likelihood per token) over all tokens (nats); inf when there are no tokens."""
    return math.exp(nll_sum / tokens) if tokens > 0 else math.inf


def score_answer(answer: str, reference: str, concepts: Sequence[Concept], similarity: float) -> dict:
    """All text scores of one answer (similarity is computed batched by `similarities`)."""
    hits = concept_hits(answer, concepts)
    return {
        "concept_recall": concept_recall(answer, concepts),
        "concepts_hit": [c.name for c, h in zip(concepts, hits) if h],
        "concepts_missed": [c.name for c, h in zip(concepts, hits) if not h],
        "similarity": similarity,
        "bleu": bleu(answer, reference),
        "rougeL": rouge_l(answer, reference),
    }


def answer_quality(row: dict) -> float:
    """One number to rank answers for the report's 'worst answers': mean of concept recall and similarity."""
    return (row["concept_recall"] + row["similarity"]) / 2.0
