"""The shared prompt layout: numbered passages with locators, citations read back, the context budget."""

from __future__ import annotations

from jobs.core.spec.metrics import ARM_PREFIX, ARMS
from jobs.core.retrieval.rag import NOT_COVERED, cited, fit_passages, format_sources, sources_listing, user_turn
from jobs.core.retrieval.hybrid import Passage

P = [Passage("d.md#a#p0", ("d.md#a#p0",), "d.md", "A", 0, "train", "en", "Kernels measure similarity."),
     Passage("t.pdf#b#p1", ("t.pdf#b#p1",), "t.pdf", "B", 4, "train", "es", "El ruido reduce el kernel.")]


def test_user_turn_numbers_passages_with_locators_and_asks_for_citations():
    text = user_turn("What do kernels measure?", P)
    assert text.startswith("Passages:\n[1] d.md > A\nKernels measure similarity.\n\n[2] t.pdf > B, p. 4\n")
    assert "Question: What do kernels measure?" in text and NOT_COVERED in text
    assert user_turn("Plain?", []) == "Plain?"


def test_citations_are_read_back_in_order_once_and_in_range():
    assert [p.id for p in cited("Yes [2], and [1][2] but not [7].", P)] == ["t.pdf#b#p1", "d.md#a#p0"]
    assert cited("no citation", P) == []


def test_passages_are_dropped_whole_when_the_budget_is_spent():
    assert fit_passages(P, 10_000, len) == P
    assert fit_passages(P, len(f"[1] {P[0].locator()}\n{P[0].text}") + 5, len) == P[:1]
    assert fit_passages(P, 3, len) == []


def test_sources_listing_and_arm_names():
    listing = sources_listing(P)
    assert listing[1] == {"n": 2, "id": "t.pdf#b#p1", "paragraph_ids": ["t.pdf#b#p1"], "file": "t.pdf",
                          "section": "B", "page": 4}
    assert "[2] t.pdf > B, p. 4  (t.pdf#b#p1)" in format_sources(listing)
    assert set(ARM_PREFIX) == set(ARMS) and len(set(ARM_PREFIX.values())) == len(ARMS)
