"""Metrics on hand-made answers: equal to the reference at the top, a paraphrase in between, unrelated at the
bottom; synonyms count for concepts; a cut, looping answer is flagged."""

from __future__ import annotations

import math

import pytest

from jobs.eval import scoring
from jobs.core.spec.suite import Concept

REFERENCE = ("A quantum kernel is the fidelity between two quantum states that a feature map prepares "
             "from two classical data points.")
PARAPHRASE = ("The kernel value is the overlap of the two states obtained by encoding each input with the "
              "quantum feature map.")
UNRELATED = "Bake the bread at two hundred degrees for forty minutes and let it cool on a rack."
CONCEPTS = [Concept("feature map", ("encoding circuit", "embedding")), Concept("fidelity", ("overlap",)),
            Concept("quantum state")]


def test_normalise_folds_case_accents_hyphens_and_plurals():
    assert scoring.normalise("Feature-Maps, Décoherence; KERNELS") == ["feature", "map", "decoherence", "kernel"]
    assert scoring.normalise("class basis") == ["class", "basis"]  # -ss and -is are not plurals
    assert scoring.normalise("density matrices, Hilbert–Schmidt") == ["density", "matrix", "hilbert", "schmidt"]


def test_concept_recall_counts_synonyms_and_whole_words_only():
    assert scoring.concept_hits("It uses an encoding circuit and the overlap of quantum states.", CONCEPTS) == \
        [True, True, True]
    assert scoring.concept_recall("The Feature Maps define it.", CONCEPTS) == pytest.approx(1 / 3)
    # 'fidelity' inside 'infidelity' is not the concept; word boundaries matter.
    assert scoring.concept_hits("infidelity", [Concept("fidelity")]) == [False]
    assert scoring.concept_recall("", CONCEPTS) == 0.0
    assert scoring.concept_recall(REFERENCE, CONCEPTS) == 1.0
    assert scoring.concept_recall(UNRELATED, CONCEPTS) == 0.0


@pytest.mark.slow
def test_similarity_orders_equal_paraphrase_unrelated(embed):
    equal, para, unrelated = scoring.similarities([REFERENCE, PARAPHRASE, UNRELATED], [REFERENCE] * 3, embed)
    assert equal == pytest.approx(1.0, abs=1e-4)
    assert 0.5 < para < 0.95
    assert unrelated < 0.2
    assert scoring.similarities([""], [REFERENCE], embed) == [0.0]


@pytest.mark.parametrize("score", [scoring.bleu, scoring.rouge_l])
def test_overlap_scores_order_equal_paraphrase_unrelated(score):
    equal, para, unrelated = (score(a, REFERENCE) for a in (REFERENCE, PARAPHRASE, UNRELATED))
    assert equal == pytest.approx(1.0)
    assert unrelated < para < equal
    assert unrelated < 0.2  # shared function words ('the', 'two') keep it above 0
    assert score("", REFERENCE) == 0.0


def test_truncated_never_stopping_answer_is_flagged():
    looping = "the kernel is the kernel is the kernel is the kernel is the kernel is the kernel is the"
    s = scoring.generation_stats(looping, new_tokens=32, stopped=False, max_new_tokens=32)
    assert s["truncated"] and s["repetitive"] and s["flagged"] and not s["stopped"]
    fine = scoring.generation_stats(REFERENCE, new_tokens=24, stopped=True, max_new_tokens=32)
    assert not fine["truncated"] and not fine["repetitive"] and not fine["flagged"]
    assert fine["repetition"] < scoring.REPEAT_FLAG


def test_repetition_sees_loops_inside_one_word_and_spares_reused_terms():
    assert scoring.repetition("rorororororororororororororororo") > 0.5
    fluent = ("A quantum kernel compares data points. The quantum kernel matrix is positive semidefinite, "
              "so the quantum kernel can feed a support vector machine.")
    assert scoring.repetition(fluent) < scoring.REPEAT_FLAG
    assert scoring.repetition("") == 0.0


def test_perplexity_is_exp_mean_nll():
    assert scoring.perplexity(0.0, 10) == 1.0
    assert scoring.perplexity(10 * math.log(4.0), 10) == pytest.approx(4.0)
    assert scoring.perplexity(1.0, 0) == math.inf


def test_score_answer_lists_hits_and_misses():
    row = scoring.score_answer("An embedding of each input.", REFERENCE, CONCEPTS, similarity=0.5)
    assert row["concepts_hit"] == ["feature map"] and row["concepts_missed"] == ["fidelity", "quantum state"]
    assert scoring.answer_quality(row) == pytest.approx((1 / 3 + 0.5) / 2)
