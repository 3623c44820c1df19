"""Faithfulness: answer sentences checked against the question's source paragraphs; a fabricated number is an
unsupported claim even in a sentence that otherwise matches a source sentence."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from jobs.eval import faithfulness

SOURCE = ("On eight qubits the simulated diagonal averaged $0.64$ and the measured one $0.59$ before readout "
          "mitigation. The model captures most of the damping but underestimates it slightly, which we attribute "
          "to crosstalk during simultaneous two-qubit gates.")
FAITHFUL = "On eight qubits the simulated diagonal averaged 0.64 and the measured one 0.59 before readout mitigation."
FABRICATED = "On eight qubits the simulated diagonal averaged 0.71 and the measured one 0.59 before readout mitigation."
UNRELATED = "Bake the bread at a high heat for forty minutes and let it cool on a rack."


def bag_of_words(texts):
    """A stand-in embedder for the fast tier: unit vectors of hashed words (same words, cosine 1)."""
    out = np.zeros((len(texts), 512), np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().replace(".", " ").split():
            out[i, zlib.crc32(w.encode()) % 512] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_sentences_split_lines_and_sentences_and_drop_code():
    text = "First claim here. Second one!\n\n- a listed point\n```python\nx = 1\n```\nLast, with $a = b$."
    assert faithfulness.sentences(text) == ["First claim here.", "Second one!", "- a listed point",
                                            "Last, with $a = b$."]


def test_claims_are_statements_not_abstentions_or_fragments():
    assert faithfulness.is_claim(FAITHFUL) and faithfulness.is_claim("T1 = 87 us.")  # short, but states values
    assert not faithfulness.is_claim("Yes, it does.") and not faithfulness.is_claim("I don't know that figure.")


def test_a_fabricated_number_is_flagged_as_unsupported():
    faithful, fabricated, unrelated = faithfulness.check([FAITHFUL, FABRICATED, UNRELATED], [[SOURCE]] * 3,
                                                         bag_of_words)
    assert faithful["claims"] == 1 and faithful["unsupported"] == 0 and faithful["sentences"][0]["supported"]
    flagged = fabricated["sentences"][0]
    # Near-identical wording (similar enough to count as support): only the invented value flags it.
    assert flagged["supported"] is False and flagged["absent"] == ["0.71"]
    assert flagged["similarity"] >= faithfulness.SUPPORT_SIMILARITY
    assert unrelated["unsupported"] == 1 and unrelated["sentences"][0]["absent"] == []


def test_an_answer_without_sources_is_not_checked_and_not_counted():
    result = faithfulness.check([FABRICATED], [[]], bag_of_words)[0]
    assert result["checked"] is False and result["unsupported"] == 0 and result["sentences"][0]["supported"] is None
    rows = [{"id": "q1", "topic": "t", "expect": "answer", "adapter": {"faithfulness": result},
             "base": {"faithfulness": result}}]
    summary = faithfulness.summary(rows)
    assert summary["not_checked"] == ["q1"] and math.isnan(summary["adapter"]["rate"])


def test_summary_rates_overall_and_per_topic():
    checked = faithfulness.check([FAITHFUL + " " + UNRELATED, FAITHFUL], [[SOURCE], [SOURCE]], bag_of_words)
    rows = [{"id": f"q{i}", "topic": topic, "expect": "answer", "adapter": {"faithfulness": f},
             "base": {"faithfulness": f}} for i, (topic, f) in enumerate(zip(("a", "b"), checked))]
    rows.append({"id": "x", "topic": "a", "expect": "abstain"})  # abstain items have no sources: left out
    s = faithfulness.summary(rows)
    assert s["adapter"]["claims"] == 3 and s["adapter"]["unsupported"] == 1
    assert s["adapter"]["rate"] == pytest.approx(1 / 3)
    assert s["adapter"]["topics"]["a"]["rate"] == 0.5 and s["adapter"]["topics"]["b"]["rate"] == 0.0


@pytest.mark.slow
def test_minilm_supports_a_paraphrase_and_not_an_invention(embed):
    paraphrase = "Before readout mitigation, the measured diagonal was 0.59 while the simulation gave 0.64."
    invented = "Readout errors were removed with a neural network trained on the calibration data."
    results = faithfulness.check([paraphrase, invented, FABRICATED], [[SOURCE]] * 3, embed)
    sims = [r["sentences"][0]["similarity"] for r in results]
    assert results[0]["unsupported"] == 0 and sims[0] >= faithfulness.SUPPORT_SIMILARITY
    assert results[1]["unsupported"] == 1 and sims[1] < faithfulness.SUPPORT_SIMILARITY
    assert results[2]["unsupported"] == 1 and results[2]["sentences"][0]["absent"] == ["0.71"]
