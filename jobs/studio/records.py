"""What the studio's pages show, read from the store through the registry: every file re-hashed against its build's
manifest (registry.read_artifact_file); a file that does not match raises IntegrityError, which the pages show as
a damaged build or a damaged file, never as content."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter, defaultdict
from datetime import datetime

from jobs.core.store import keys, registry
from jobs.core.store.registry import IntegrityError, RegistryError
from jobs.core.spec.metrics import HEADLINE
from jobs.core.store.backends import StoreError
from jobs.eval.diagnose import question_diff
from jobs.eval.report import LABELS, comparison_rows, fmt, signed
from jobs.studio import StudioError

CATALOGUE = "catalogue.parquet"  # every paragraph curate parsed, selected or not (curate writes it where it can)
KEPT = "paragraphs.parquet"  # the selected paragraphs, with the reason each was kept
EXAMPLES_SHOWN = 200  # synthetic examples per origin on a build page
ROWS_SHOWN = 2000  # curate decisions on a build page (a thesis has a few thousand paragraphs)


def build_rows(store) -> list[dict]:
    """One row per complete build for the builds table: its manifest, and the headline intervals from its
    report/metrics.json (re-hashed; kept in memory by manifest hash, since a complete build never changes)."""
    current = registry.current_tag(store)
    rows = []
    for tag in registry.complete_tags(store):
        try:
            m = registry.read_manifest(store, tag)
            intervals = _intervals(store, tag, hashlib.sha256(store.get_bytes(keys.manifest_key(tag))).hexdigest())
        except IntegrityError as exc:
            rows.append({"tag": tag, "damaged": str(exc), "status": "damaged", "promoted": tag == current,
                         "created_at": ""})
            continue
        rows.append(_row(tag, m, current, intervals))
    return sorted(rows, key=lambda r: r.get("created_at") or "", reverse=True)


def chat_models(store) -> list[dict]:
    """The builds the chat offers: {tag, index (published with a retrieval index), retrieval (on by default per
    its spec)}; a build whose manifest is damaged is left out (loading it would be refused)."""
    out = []
    for tag in registry.complete_tags(store):
        try:
            m = registry.read_manifest(store, tag)
        except IntegrityError:
            continue
        on = ((m.get("spec") or {}).get("retrieval") or {}).get("default") == "on"
        out.append({"tag": tag, "index": "index" in (m.get("artifacts") or {}), "retrieval": on})
    return out


_INTERVALS: dict[tuple[str, str], dict] = {}


def _intervals(store, tag: str, manifest_sha: str) -> dict:
    key = (tag, manifest_sha)
    if not listed(registry.read_manifest(store, tag), "report", "metrics.json"):
        return {}  # a build without a report shows its manifest's numbers alone
    if key not in _INTERVALS:
        _INTERVALS[key] = adapter_intervals(read_json(store, tag, "report", "metrics.json"))
    return _INTERVALS[key]


def adapter_intervals(report: dict) -> dict:
    """{metric: {mean, low, high}} of the adapter from a report's metrics.json (perplexity is kept apart there)."""
    found = dict((report.get("overall") or {}).get("adapter") or {})
    found["perplexity"] = (report.get("perplexity") or {}).get("adapter")
    return {name: found[name] for name in HEADLINE if isinstance(found.get(name), dict)}


def _row(tag: str, m: dict, current: str | None, intervals: dict | None = None) -> dict:
    metrics, spec, timings = m.get("metrics") or {}, m.get("spec") or {}, m.get("timings_s") or {}
    seconds = [v for v in timings.values() if isinstance(v, (int, float))]
    headline = {}
    for name in HEADLINE:
        i = (intervals or {}).get(name) or {}
        headline[name] = {"value": metrics.get(name), "text": fmt(metrics.get(name), name),
                          "interval": f"[{fmt(i['low'], name)}, {fmt(i['high'], name)}]" if "low" in i else ""}
    return {"tag": tag, "damaged": None, "promoted": tag == current,
            "status": "promoted" if tag == current else ("complete" if m.get("status") == "passed" else
                                                         str(m.get("status"))),
            "gate": m.get("status"), "created_at": m.get("created_at") or "", "date": _date(m.get("created_at")),
            "base_model": (spec.get("base_model") or {}).get("id", "") or str(m.get("base_model", "")),
            "data_commit": ((m.get("git") or {}).get("commit") or "")[:10],
            "dataset_bytes": _bytes(m, "dataset"), "dataset_sha256": str(m.get("dataset_sha256", ""))[:12],
            "seconds": round(sum(seconds), 1) if seconds else None, "headline": headline}


def _bytes(m: dict, artifact: str) -> int | None:
    records = (m.get("artifacts") or {}).get(artifact)
    return sum(int(r.get("bytes", 0)) for r in records) if isinstance(records, list) else None


def _date(stamp) -> str:
    try:
        return datetime.fromisoformat(str(stamp)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(stamp or "")


def read_json(store, tag: str, artifact: str, path: str):
    return json.loads(registry.read_artifact_file(store, tag, artifact, path))


def read_parquet(store, tag: str, artifact: str, path: str) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(registry.read_artifact_file(store, tag, artifact, path))).to_pylist()


def listed(manifest: dict, artifact: str, path: str) -> bool:
    return any(r.get("path") == path for r in (manifest.get("artifacts") or {}).get(artifact) or [])


def part(fn, *args):
    """One part of a page: its value, or the reason it cannot be shown (a damaged file is named, never shown)."""
    try:
        return {"ok": True, "value": fn(*args)}
    except IntegrityError as exc:
        return {"ok": False, "damaged": True, "error": str(exc)}
    except (RegistryError, StoreError, ValueError, KeyError) as exc:
        return {"ok": False, "damaged": False, "error": str(exc)}


def build_detail(store, tag: str) -> dict:
    """Everything the build page shows. The whole build is re-hashed first: a damaged one shows only what is wrong."""
    try:
        manifest = registry.read_manifest(store, tag)
        check = registry.verify_build(store, tag)
    except IntegrityError as exc:
        return {"tag": tag, "damaged": [str(exc)], "manifest": None}
    except RegistryError as exc:
        raise StudioError(str(exc)) from None
    detail = {"tag": tag, "manifest": manifest, "damaged": check.damaged, "files": check.files,
              "row": _row(tag, manifest, registry.current_tag(store))}
    if check.damaged:
        return detail
    detail["metrics"] = part(read_json, store, tag, "report", "metrics.json")
    if detail["metrics"]["ok"]:
        detail["row"] = _row(tag, manifest, registry.current_tag(store), adapter_intervals(detail["metrics"]["value"]))
    detail["train"] = part(read_json, store, tag, "adapter", "metrics.json")
    detail["stats"] = part(read_json, store, tag, "dataset", "stats.json")
    detail["decisions"] = part(decisions, store, tag, manifest)
    detail["synthetic"] = part(synthetic, store, tag)
    return detail


def decisions(store, tag: str, manifest: dict) -> dict:
    """Curate's decisions by document and section: every parsed paragraph (the catalogue) where the build has one,
    else the paragraphs it kept, each with its reason."""
    name = CATALOGUE if listed(manifest, "dataset", CATALOGUE) else KEPT
    rows = read_parquet(store, tag, "dataset", name)
    docs: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows[:ROWS_SHOWN]:
        docs[r.get("source_path", "")][r.get("section", "")].append({
            "id": r.get("id"), "text": r.get("text", ""), "kept": r.get("selected", True),
            "reason": r.get("reason", ""), "split": r.get("split", ""), "kind": r.get("kind", "")})
    return {"file": name, "all": name == CATALOGUE, "total": len(rows), "shown": min(len(rows), ROWS_SHOWN),
            "docs": {d: dict(s) for d, s in sorted(docs.items())}}


def synthetic(store, tag: str) -> dict:
    """Training examples by origin (template, synthetic, paraphrase), each with the paragraphs it came from."""
    rows = read_parquet(store, tag, "dataset", "train.parquet")
    paragraphs = {p["id"]: p for p in read_parquet(store, tag, "dataset", KEPT)}
    by_origin: dict[str, list] = defaultdict(list)
    for r in rows:
        by_origin[r.get("origin") or "template"].append(r)
    shown = {}
    for origin, items in sorted(by_origin.items()):
        shown[origin] = [{"id": r["id"], "template": r.get("template"), "writer": r.get("writer"),
                          "messages": r.get("messages") or [],
                          "sources": [{"id": pid, "text": (paragraphs.get(pid) or {}).get("text", "(not kept)")}
                                      for pid in r.get("paragraph_ids") or []]}
                         for r in items[:EXAMPLES_SHOWN]]
    return {"counts": dict(Counter(r.get("origin") or "template" for r in rows)), "examples": shown}


def loss_points(train_metrics) -> list[tuple[float, float]]:
    return [(r["step"], r["loss"]) for r in train_metrics or []
            if isinstance(r, dict) and isinstance(r.get("loss"), (int, float)) and isinstance(r.get("step"), int)]


def spec_diff(a: dict, b: dict, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, A's value, B's value) for every leaf of two specs that differs."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += spec_diff(va, vb, name + ".")
        elif va != vb:
            out.append((name, json.dumps(va, sort_keys=True), json.dumps(vb, sort_keys=True)))
    return out


def compare(store, a: str, b: str) -> dict:
    """Two builds side by side: spec differences, headline deltas, per-topic scores with intervals, the
    question-level diff and both loss curves. Every file re-hashed; a damaged one is named instead."""
    out = {"a": a, "b": b}
    try:
        ma, mb = registry.read_manifest(store, a), registry.read_manifest(store, b)
        ra, rb = read_json(store, a, "report", "metrics.json"), read_json(store, b, "report", "metrics.json")
        la, lb = read_json(store, a, "adapter", "metrics.json"), read_json(store, b, "adapter", "metrics.json")
    except IntegrityError as exc:
        return {**out, "damaged": str(exc)}
    except RegistryError as exc:
        raise StudioError(str(exc)) from None
    rows = comparison_rows(rb.get("headline") or {}, ra.get("headline") or {})
    for r in rows:
        r.update(old_text=fmt(r["old"], r["metric"]), new_text=fmt(r["new"], r["metric"]), delta_text=signed(r["delta"]))
    return {**out, "damaged": None, "spec": spec_diff(ma.get("spec") or {}, mb.get("spec") or {}),
            "same_suite": (ra.get("suite") or {}).get("sha256") == (rb.get("suite") or {}).get("sha256"),
            "headline": rows, "topics": topic_rows(ra, rb), "diff": question_diff(ra.get("questions") or [],
                                                                                   rb.get("questions") or []),
            "gate": {a: ma.get("status"), b: mb.get("status")}, "loss": {a: loss_points(la), b: loss_points(lb)}}


def topic_rows(a: dict, b: dict) -> list[dict]:
    """Per topic and metric: A's and B's mean with its 95% interval, and B - A."""
    rows = []
    for topic in sorted(set(a.get("topics") or {}) | set(b.get("topics") or {})):
        for metric in ("concept_recall", "similarity"):
            sides = [((m.get("topics") or {}).get(topic) or {}).get("adapter", {}).get(metric) for m in (a, b)]
            means = [s.get("mean") if isinstance(s, dict) else None for s in sides]
            delta = None if None in means else means[1] - means[0]
            rows.append({"topic": topic, "metric": LABELS.get(metric, metric),
                         "a": _with_interval(sides[0]), "b": _with_interval(sides[1]), "delta": signed(delta),
                         "better": delta is not None and delta > 1e-9, "worse": delta is not None and delta < -1e-9})
    return rows


def _with_interval(side) -> str:
    if not isinstance(side, dict) or side.get("mean") is None:
        return "–"
    low, high = side.get("low"), side.get("high")
    return fmt(side["mean"]) + (f" [{fmt(low)}, {fmt(high)}]" if low is not None and high is not None else "")
