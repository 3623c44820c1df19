"""The report is self-contained (no scripts, no network) and renders in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from jobs.eval.report import DIAGNOSTICS, comparison_rows, dataset_view, flat_stats, loss_svg, pct, points, verdict

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_verdict_knows_direction():
    assert verdict("similarity", 0.1) == "better" and verdict("similarity", -0.1) == "worse"
    assert verdict("perplexity", -3.0) == "better" and verdict("perplexity", 3.0) == "worse"
    assert verdict("bleu", 0.0) == "same" and verdict("mean_new_tokens", 5.0) == ""


def test_comparison_rows_against_base_and_previous():
    headline = {"similarity": 0.7, "base_similarity": 0.5, "perplexity": 8.0, "base_perplexity": 10.0}
    rows = {r["metric"]: r for r in comparison_rows(headline, headline, "base_")}
    assert rows["similarity"]["delta"] == pytest.approx(0.2) and rows["similarity"]["verdict"] == "better"
    assert rows["perplexity"]["verdict"] == "better"
    assert rows["bleu"]["delta"] is None  # missing on either side: shown as a dash, never a crash
    assert all(r["old"] is None for r in comparison_rows(headline, None))


def test_shares_and_their_changes_read_as_percentages():
    assert pct(0.425) == "42%" and pct(None) == "–" and pct(float("nan")) == "–"
    assert points(0.25) == "+25 pts" and points(-0.1) == "-10 pts" and points(None) == "–"
    rows = {r["metric"]: r for r in comparison_rows({"unsupported_rate": 0.2, "base_unsupported_rate": 0.5,
                                                     "learned_rate": 0.4}, None, "", DIAGNOSTICS)}
    assert rows["unsupported_rate"]["new"] == 0.2 and rows["learned_rate"]["label"].startswith("learned")
    both = {r["metric"]: r for r in comparison_rows({"unsupported_rate": 0.2, "base_unsupported_rate": 0.5},
                                                    {"unsupported_rate": 0.2, "base_unsupported_rate": 0.5}, "base_",
                                                    DIAGNOSTICS[:6])}
    assert both["unsupported_rate"]["verdict"] == "better"  # fewer unsupported claims than the base


def test_loss_curve_and_stats_helpers(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps([{"step": 1, "loss": 3.0}, {"step": 2, "loss": 1.0}]))
    svg = loss_svg(tmp_path)
    assert svg["first"] == 3.0 and svg["last"] == 1.0 and len(svg["points"].split()) == 2
    assert loss_svg(tmp_path / "none") is None
    rows = dict(flat_stats({"documents": 3, "paragraphs": {"kept": 5}, "lengths": list(range(20))}))
    assert rows["documents"] == "3" and rows["paragraphs.kept"] == "5" and "(20 items)" in rows["lengths"]


def test_dataset_view_orders_bins_and_flags_unused_keywords():
    view = dataset_view({"documents": {"count": 4}, "tokens": {"bins": {"1024-2047": 1, "128-255": 6, "0-31": 0,
                                                                         ">=4096": 0, "32-63": 2}},
                         "keyword_coverage": {"kernel": {"examples": 9, "paragraphs": 3},
                                              "expressibility": {"examples": 0, "paragraphs": 0}}})
    assert view["summary"] == [("documents", 4)]
    assert [b[0] for b in view["bins"]] == ["0-31", "32-63", "128-255", "1024-2047", ">=4096"]
    assert view["bins"][2][2] == 100.0  # the tallest bar is full width
    assert [k[0] for k in view["keywords"]] == ["kernel", "expressibility"] and view["keywords"][1][1] == 0
    assert dataset_view({}) == {"summary": [], "bins": [], "keywords": [], "all": []}


@pytest.mark.slow
def test_report_is_self_contained(first_report):
    html = (first_report / "report.html").read_text()
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the report must not load anything remote"
    for section in ("Headline", "Adapter vs base model", "Gate", "What the model learned", "Memorised vs generalised",
                    "Faithfulness", "Abstention", "Changes since", "Where to add data", "Training loss", "Dataset",
                    "By topic", "Worst answers", "Every question"):
        assert section in html, section
    # The thresholds behind every verdict are stated on the page.
    assert re.search(r"names at least 50% of the\s+expected concepts, its MiniLM similarity to the reference is "
                     r"at least 0.600", html)
    assert "nz-02" in html and "(abstain item)" in html
    assert "<polyline" in html  # the loss curve, drawn from the adapter's training log
    # qk-01's referenced source paragraph; nz-01 names none, and this build has no index to rank its document's.
    assert "qk-01" in html and "A quantum kernel compares two data points" in html
    assert "nz-01" in html and "Depolarizing noise mixes the state" not in html
    assert "a build without a retrieval index looks for no other" in html


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(first_report, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
           (first_report / "report.html").resolve().as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=90)
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 2000)
    # A rendered page has text and tables: many distinct grey levels, not one flat colour.
    lo, hi = image.getextrema()
    assert hi - lo > 100
    assert len(image.getcolors(maxcolors=65536) or []) > 20
