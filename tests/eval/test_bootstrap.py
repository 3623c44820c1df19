"""Bootstrap intervals: contain the point estimate, shrink to it for constant data, repeat with a seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jobs.eval import bootstrap


def test_interval_contains_mean_and_is_reproducible():
    values = np.random.default_rng(1).uniform(0, 1, size=30)
    a = bootstrap.bootstrap_mean(values, samples=500, seed=3)
    assert a["low"] < a["mean"] < a["high"]
    assert a["mean"] == pytest.approx(values.mean())
    assert bootstrap.bootstrap_mean(values, samples=500, seed=3) == a
    # More questions, narrower interval.
    wide = bootstrap.bootstrap_mean(values[:5], samples=500, seed=3)
    assert (wide["high"] - wide["low"]) > (a["high"] - a["low"])


def test_constant_and_empty_values():
    assert bootstrap.bootstrap_mean([0.4] * 5, 100, 0) == {"mean": 0.4, "low": pytest.approx(0.4),
                                                       "high": pytest.approx(0.4)}
    assert math.isnan(bootstrap.bootstrap_mean([], 100, 0)["mean"])


def test_paired_delta_keeps_pairs():
    before = np.linspace(0, 1, 20)
    after = before + 0.1  # every question improves by exactly 0.1
    d = bootstrap.bootstrap_delta(after, before, 200, 0)
    assert d["mean"] == pytest.approx(0.1) and d["low"] == pytest.approx(0.1) and d["high"] == pytest.approx(0.1)
    with pytest.raises(ValueError):
        bootstrap.bootstrap_delta([1.0], [1.0, 2.0], 10, 0)


def test_perplexity_interval_is_token_weighted():
    nll, tokens = [10 * math.log(2.0), 30 * math.log(8.0)], [10, 30]
    p = bootstrap.bootstrap_perplexity(nll, tokens, 300, 0)
    assert p["mean"] == pytest.approx(math.exp((10 * math.log(2) + 30 * math.log(8)) / 40))
    assert 2.0 <= p["low"] <= p["mean"] <= p["high"] <= 8.0
