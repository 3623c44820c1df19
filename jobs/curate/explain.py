"""`python -m jobs.curate --explain`: every paragraph with its decision and the reason, for the human in the
loop, who then pins or drops paragraphs by id in the `curate.overrides` file."""

from __future__ import annotations

from collections import Counter

from jobs.curate import select

LABELS = {"": "no match", "short": "short", "non_content": "non-content", "dropped_by_overrides": "override",
          "not_selectable": "context only", "duplicate": "duplicate"}
PREVIEW_CHARS = 100


def decisions(d) -> list[tuple[object, bool, str, str]]:
    """(paragraph, kept, reason, detail) for every paragraph, in document order."""
    dup = {r["id"]: r for r in d.dup_paragraphs}
    out = []
    for doc in d.docs:
        for p in doc.paragraphs:
            reason, detail = d.selection.why[p.id]
            kept = reason in select.REASONS
            if p.id in dup:
                r = dup[p.id]
                kept, reason = False, "duplicate"
                detail = f"{r['kind']} duplicate (similarity {r['similarity']}) of {r['duplicate_of']}"
            elif kept and d.split.held(p.id):
                detail += f"; held out ({d.split.by}): eval split, never trained on"
            out.append((p, kept, reason, detail))
    return out


def explain(d) -> str:
    rows = decisions(d)
    kept = Counter(reason for _, k, reason, _ in rows if k)
    dropped = Counter(LABELS.get(reason, reason) for _, k, reason, _ in rows if not k)
    lines = [f"curate --explain: {len(rows)} paragraphs in {len(d.docs)} documents",
             f"  kept {sum(kept.values())}: " + ", ".join(f"{r} {n}" for r, n in sorted(kept.items())),
             f"  not kept {sum(dropped.values())}: " + ", ".join(f"{r} {n}" for r, n in sorted(dropped.items())),
             f"  semantic selection: {d.selection.semantic}"]
    doc = section = None
    for p, k, reason, detail in rows:
        if p.doc != doc:
            doc, section = p.doc, None
            lines += ["", f"== {doc}"]
        if p.section != section:
            section = p.section
            lines.append(f"-- {section or '(top)'}")
        text = " ".join(p.text.split())
        preview = text[:PREVIEW_CHARS] + ("..." if len(text) > PREVIEW_CHARS else "")
        lines.append(f"  {'KEPT' if k else 'drop':<5}{LABELS.get(reason, reason):<13}{p.id}")
        lines.append(f"  {'':<18}{p.kind}: {detail}  | {preview}")
    lines += ["", "To change a decision, list paragraph ids in a YAML file (pin: [...] always use, drop: [...] never "
              "use) and name it in the spec's curate.overrides."]
    return "\n".join(lines)
