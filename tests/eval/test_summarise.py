"""Per-question rows -> headline, overall and per-topic intervals (no model needed)."""

from __future__ import annotations

import json
import math

import pytest

from jobs.eval.run import _json_safe, summarise


def _side(recall, similarity, stopped=True):
    return {"concept_recall": recall, "similarity": similarity, "bleu": 0.1, "rougeL": 0.2, "stopped": stopped,
            "repetition": 0.0, "new_tokens": 20}


ROWS = [{"id": f"q{i}", "topic": "kernels" if i < 3 else "noise",
         "adapter": _side(0.5 + 0.1 * i, 0.6), "base": _side(0.2, 0.5, stopped=i % 2 == 0)} for i in range(5)]


def test_headline_is_flat_and_has_base_and_delta():
    s = summarise(ROWS, {"adapter": [(20.0, 10)], "base": [(30.0, 10)]}, samples=100, seed=0)
    h = s["headline"]
    assert h["concept_recall"] == pytest.approx(0.7) and h["base_concept_recall"] == pytest.approx(0.2)
    assert h["delta_concept_recall"] == pytest.approx(0.5)
    assert h["stop_rate"] == 1.0 and h["base_stop_rate"] == pytest.approx(0.6)
    assert h["perplexity"] == pytest.approx(math.exp(2.0)) and h["delta_perplexity"] < 0
    assert all(isinstance(v, float) for v in h.values())
    assert s["topics"]["kernels"]["questions"] == 3 and s["topics"]["noise"]["questions"] == 2
    assert s["topics"]["noise"]["adapter"]["concept_recall"]["mean"] == pytest.approx(0.85)
    assert s["overall"]["delta"]["concept_recall"]["low"] > 0  # every question improved


def test_no_heldout_paragraphs_gives_null_perplexity_in_json():
    s = summarise(ROWS, {"adapter": [], "base": []}, samples=50, seed=0)
    assert math.isnan(s["headline"]["perplexity"])
    text = json.dumps(_json_safe(s), allow_nan=False)
    assert json.loads(text)["headline"]["perplexity"] is None
