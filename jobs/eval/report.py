"""The report: metrics.json (+ training log, dataset stats) in, one self-contained report.html out.

No network and no JavaScript: CSS is inline, the loss curve is an inline SVG drawn from the adapter folder's
metrics.json (loss.png embedded as base64 when there is no log), bars are CSS widths. `comparison_rows` is
shared with `python -m jobs.eval.compare`, so the terminal prints the same comparison as the report.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from jobs.core.spec.metrics import DIAGNOSTICS, HEADLINE, HIGHER_IS_BETTER, LABELS, LOWER_IS_BETTER, WITH_BASE
from jobs.eval.diagnose import OUTCOME_LABELS

TEMPLATE_DIR = Path(__file__).parent / "templates"
SAME = 1e-9


def _missing(value) -> bool:
    """No value to show: None, or a float NaN (a metric this build could not compute)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value, metric: str = "") -> str:
    if _missing(value):
        return "–"
    if metric in ("perplexity", "mean_new_tokens") or abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.3f}"


def signed(value) -> str:
    """A change with its sign ('+0.012'); a dash when it cannot be computed."""
    if _missing(value):
        return "–"
    return f"{value:+.3f}"


def verdict(metric: str, delta) -> str:
    """'better', 'worse' or 'same' for a change in `metric` (direction-aware); '' when it has no direction."""
    if _missing(delta):
        return ""
    if metric not in HIGHER_IS_BETTER + LOWER_IS_BETTER:
        return ""
    if abs(delta) <= SAME:
        return "same"
    up = delta > 0
    return "better" if up == (metric in HIGHER_IS_BETTER) else "worse"


def pct(value) -> str:
    """A share as a whole percentage ('42%'); a dash when it cannot be computed."""
    if _missing(value):
        return "–"
    return f"{100 * value:.0f}%"


def points(value) -> str:
    """A change of a share in percentage points ('+12 pts'); a dash when it cannot be computed."""
    if _missing(value):
        return "–"
    return f"{100 * value:+.0f} pts"


def comparison_rows(new: dict, old: dict | None, old_prefix: str = "", metrics: tuple = HEADLINE) -> list[dict]:
    """`metrics` of `new` against `old` (another headline, or the same one with old_prefix='base_')."""
    rows = []
    for m in metrics:
        a = new.get(m)
        b = None if old is None else old.get(old_prefix + m)
        delta = None if a is None or b is None else a - b
        rows.append({"metric": m, "label": LABELS[m], "new": a, "old": b, "delta": delta,
                     "verdict": verdict(m, delta)})
    return rows


def loss_svg(adapter_dir: Path, width: int = 640, height: int = 220) -> dict | None:
    """Polyline points for the training loss (adapter folder's metrics.json: records with step and loss)."""
    path = Path(adapter_dir) / "metrics.json"
    if not path.is_file():
        return None
    records = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(records, dict):  # tolerate {"log": [...]} as well as the contract's plain list
        records = records.get("log", [])
    points = [(float(r["step"]), float(r["loss"])) for r in records
              if isinstance(r, dict) and r.get("loss") is not None and r.get("step") is not None]
    if not points:
        return None
    pad_l, pad_r, pad_t, pad_b = 56, 16, 12, 32
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    def sx(x): return pad_l + (x - x0) / (x1 - x0) * (width - pad_l - pad_r)
    def sy(y): return pad_t + (y1 - y) / (y1 - y0) * (height - pad_t - pad_b)
    return {"width": width, "height": height, "points": " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points),
            "dots": [(round(sx(x), 1), round(sy(y), 1)) for x, y in points] if len(points) <= 60 else [],
            "x_min": x0, "x_max": max(xs), "y_min": min(ys), "y_max": max(ys), "first": ys[0], "last": ys[-1],
            "left": pad_l, "right": width - pad_r, "top": pad_t, "bottom": height - pad_b, "steps": len(points)}


def loss_png(adapter_dir: Path) -> str | None:
    path = Path(adapter_dir) / "loss.png"
    return base64.b64encode(path.read_bytes()).decode("ascii") if path.is_file() else None


def flat_stats(data: dict, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Dataset stats.json as (name, value) rows: nested mappings become dotted names, lists are summarised."""
    rows = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < 1:
            rows += flat_stats(value, name + ".", depth + 1)
        elif isinstance(value, dict):
            rows.append((name, ", ".join(f"{k}: {v}" for k, v in list(value.items())[:12])))
        elif isinstance(value, list):
            shown = ", ".join(str(v) for v in value[:12])
            rows.append((name, shown + (f" … ({len(value)} items)" if len(value) > 12 else "")))
        elif isinstance(value, float):
            rows.append((name, f"{value:.4g}"))
        else:
            rows.append((name, str(value)))
    return rows


DATASET_SUMMARY = (  # (label, dotted key in the curate stage's stats.json); rows whose key is absent are left out
    ("documents", "documents.count"), ("document bytes", "documents.bytes"),
    ("paragraphs seen", "paragraphs.seen"), ("paragraphs kept", "paragraphs.kept"),
    ("training examples", "examples.train"), ("eval-split examples", "examples.eval"),
    ("held-out sections", "sections.held_out"), ("sections", "sections.total"),
    ("held-out paragraphs (perplexity)", "heldout_paragraphs"), ("duplicates removed", "examples.duplicates_removed"),
    ("tokens per example: mean", "tokens.mean"), ("tokens per example: p95", "tokens.p95"),
    ("tokens per example: max", "tokens.max"),
)


def lookup(data: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _lower_bound(bin_name: str) -> int:
    # Bin names are ranges ("128-255", ">=4096"); order them by their first number, not alphabetically.
    found = re.search(r"\d+", bin_name)
    return int(found.group()) if found else 0


def dataset_view(data: dict) -> dict:
    """What the report shows of stats.json: a summary, the token-length histogram, keyword coverage."""
    summary = [(label, lookup(data, key)) for label, key in DATASET_SUMMARY if lookup(data, key) is not None]
    bins = lookup(data, "tokens.bins") or {}
    bins = sorted(((k, v) for k, v in bins.items() if isinstance(v, (int, float))), key=lambda kv: _lower_bound(kv[0]))
    peak = max((v for _, v in bins), default=0) or 1
    coverage = lookup(data, "keyword_coverage") or {}
    keywords = sorted(((k, v.get("examples", 0), v.get("paragraphs", 0)) for k, v in coverage.items()
                       if isinstance(v, dict)), key=lambda r: -r[1])
    top = max((e for _, e, _ in keywords), default=0) or 1
    return {"summary": summary, "bins": [(k, v, 100 * v / peak) for k, v in bins],
            "keywords": [(k, e, p, 100 * e / top) for k, e, p in keywords], "all": flat_stats(data)}


def render_report(path: Path, result: dict, *, worst: list[dict], adapter_dir: Path, dataset_stats: dict,
                  spec, paragraph_text: dict[str, str]) -> None:
    env = Environment(loader=FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.filters["signed"] = signed
    env.filters["pct"] = pct
    env.filters["points"] = points
    headline = result["headline"]
    previous = result["previous"]["headline"] if result.get("previous") else None
    loss = loss_svg(adapter_dir)
    html = env.get_template("report.html.j2").render(
        r=result, tag=result.get("tag") or "", spec=spec, labels=LABELS,
        vs_base=comparison_rows(headline, headline, "base_"),
        vs_previous=comparison_rows(headline, previous) if previous else None,
        diagnostics_vs_base=comparison_rows(headline, headline, "base_", WITH_BASE),
        diagnostics_vs_previous=comparison_rows(headline, previous, "", DIAGNOSTICS) if previous else None,
        previous_tag=(result["previous"] or {}).get("tag") or "previous",
        loss=loss, loss_png=None if loss else loss_png(adapter_dir),
        dataset=dataset_view(dataset_stats), worst=worst, outcome_labels=OUTCOME_LABELS,
        by_id={q["id"]: q for q in result["questions"]}, paragraph_text=paragraph_text,
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    Path(path).write_text(html, encoding="utf-8")
