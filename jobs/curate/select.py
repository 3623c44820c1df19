"""Which paragraphs become examples: keyword relevance, optional MiniLM similarity to the eval topics, and a
human overrides file (pin or drop paragraph ids). Context = neighbouring paragraphs in the same section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jobs.core.embed import EmbedderUnavailable, load_embedder
from jobs.core.overrides import Overrides, read_overrides
from jobs.core.suite import Suite
from jobs.curate.blocks import CurateError
from jobs.curate.documents import Document, Paragraph

# Sections that list sources or thank people: keyword hits there are citations, not explanations.
NON_CONTENT = re.compile(r"^(references?|bibliograph|bibliografía|referencias|acknowledg|agradecimientos|"
                         r"índice|contents|table of contents|list of|glosario|licen[cs]e)", re.I)
SELECTABLE = ("prose", "caption")
MIN_CONTEXT_CHARS = 40


@dataclass
class Selected:
    paragraph: Paragraph
    keywords: list[str]  # spec keywords found in the paragraph, most specific first
    before: list[Paragraph]  # context: neighbours in the same section, nearest last
    after: list[Paragraph]
    reason: str  # keyword | semantic | pinned
    score: float = 0.0


def keyword_patterns(keywords: tuple[str, ...]) -> list[tuple[str, re.Pattern]]:
    """One case-insensitive pattern per keyword: whole words, spaces or hyphens between words, plural allowed."""
    out = []
    for kw in keywords:
        words = [re.escape(w) for w in re.split(r"[\s-]+", kw.strip()) if w]
        out.append((kw, re.compile(r"(?<!\w)" + r"[\s-]+".join(words) + r"(?:s|es)?(?!\w)", re.I)))
    return out


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
                          f"from a previous dataset's paragraph_ids (the document may have changed)")
    return ov


def semantic_scores(paragraphs: list[Paragraph], topics: list[str]) -> list[float]:
    """Highest cosine similarity of each paragraph to any eval topic (MiniLM, loaded only when asked for)."""
    try:
        embed = load_embedder("cpu", batch_size=64)
    except EmbedderUnavailable as exc:
        raise CurateError(f"curate.semantic_selection: {exc}, or set semantic_selection: false") from None
    if not topics:
        return [0.0] * len(paragraphs)
    return [float(v) for v in (embed([x.text for x in paragraphs]) @ embed(topics).T).max(axis=1)]


def eval_topics(suite: Suite | None) -> list[str]:
    """One probe text per eval question: the topic, the question and its expected concept names."""
    if suite is None:
        return []
    return sorted(f"{q.topic}: {q.question} ({', '.join(c.name for c in q.concepts)})" for q in suite.questions)


def useful_context(p: Paragraph, ov: Overrides) -> bool:
    # "Our Figure 8 in the paper:" adds nothing to an answer; code of any length does (engineer template).
    return p.id not in ov.drop and (p.kind == "code" or len(p.text) >= MIN_CONTEXT_CHARS)


def select(docs: list[Document], spec_curate, suite: Suite | None, counts: dict) -> list[Selected]:
    """Selected paragraphs with their context, in document order; `counts` gets the why of every decision."""
    patterns = keyword_patterns(spec_curate.keywords)
    all_ids = {p.id for d in docs for p in d.paragraphs}
    ov = check_overrides(spec_curate.overrides, all_ids)
    candidates, by_section = [], {}
    for d in docs:
        for p in d.paragraphs:
            by_section.setdefault((p.doc, p.section), []).append(p)
    for d in docs:
        for p in d.paragraphs:
            if p.id in ov.drop:
                counts["dropped_by_overrides"] += 1
            elif p.id in ov.pin:
                candidates.append((p, keyword_hits(p.text, patterns), "pinned"))
            elif p.kind not in SELECTABLE:
                continue
            elif any(NON_CONTENT.match(s.strip()) for s in p.section.split(">")) and p.section:
                counts["skipped_non_content_section"] += 1
            elif len(p.text) < spec_curate.min_paragraph_chars:
                counts["skipped_short"] += 1
            else:
                hits = keyword_hits(p.text, patterns)
                candidates.append((p, hits, "keyword" if hits else ""))
    unmatched = [c for c in candidates if not c[2]]
    if spec_curate.semantic_selection and unmatched:
        topics = eval_topics(suite)
        scores = semantic_scores([c[0] for c in unmatched], topics)
        for c, score in zip(unmatched, scores):
            if score >= spec_curate.semantic_threshold:
                candidates[candidates.index(c)] = (c[0], c[1], "semantic")
    selected = []
    n = spec_curate.context_paragraphs
    for p, hits, reason in candidates:
        if not reason:
            counts["skipped_no_keyword"] += 1
            continue
        section = by_section[(p.doc, p.section)]
        i = section.index(p)
        before = [q for q in section[max(0, i - n):i] if useful_context(q, ov)]
        after = [q for q in section[i + 1:i + 1 + n] if useful_context(q, ov)]
        selected.append(Selected(p, hits, before, after, reason))
        counts[f"selected_{reason}"] += 1
    return selected
