"""Keywords proposed from the documents themselves: the terms that distinguish them from general English or
Spanish, then the terms of their section titles, until the keywords select (nearly) every paragraph.

A term's weight is TF-IDF against a general background: how often the documents use it (log-scaled), times how
rare it is in general use (8 minus its Zipf frequency in wordfreq's background, so "kernel" (3.6) weighs far more
than "model" (5.0), and "the" (7.7) nothing), times the square root of the number of sections it occurs in (a
term of one paragraph is a poor selector). Single words and two-word terms both compete; acronyms defined in the
text ("noisy intermediate-scale quantum (NISQ)") give concepts their synonyms.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from jobs.core.text.prose import keyword_patterns, language

WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['-](?=[^\W\d_]))*", re.U)  # letters, inner hyphens/apostrophes
MATH = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\[A-Za-z]+|```.*?```|`[^`]*`", re.S)  # math, LaTeX commands, code
COMMON_ZIPF = 4.6  # a word at least this frequent in general use (e.g. "results", "model") is no keyword alone
STOP_ZIPF = 5.8  # a word this frequent (e.g. "which", "between") is a function word: never inside a term
BIGRAM_WORD_ZIPF = 5.0  # each word of a two-word term is at most this common ("per qubit" is no term)
MAX_KEYWORDS = 40
TOP_BY_WEIGHT = 15  # always proposed, whether or not a greedy cover needs them
ACRONYM = re.compile(r"((?:[\w-]+\s+){1,6}?)\(([A-Z][A-Za-z0-9]{1,9}s?)\)")


def zipf(term: str, lang: str) -> float:
    from wordfreq import zipf_frequency

    return zipf_frequency(term, lang)


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(MATH.sub(" ", text))]


@dataclass
class Terms:
    """The documents' vocabulary with weights; `rarity` and `weight` are per term (one or two words)."""

    weight: dict[str, float] = field(default_factory=dict)
    rarity: dict[str, float] = field(default_factory=dict)
    acronyms: dict[str, str] = field(default_factory=dict)  # ACRONYM -> expansion (lower case), and back

    def in_text(self, text: str, limit: int = 4) -> list[str]:
        """The weightiest terms that `text` uses, most distinctive first (a two-word term hides its words)."""
        ws = words(text)
        found = {w for w in ws if w in self.weight} | {f"{a} {b}" for a, b in zip(ws, ws[1:])
                                                         if f"{a} {b}" in self.weight}
        ranked = sorted(found, key=lambda t: (-self.rarity[t] * (1 + t.count(" ")), t))
        out: list[str] = []
        for t in ranked:
            if not any(t in o.split() or t == o for o in out) and not any(o in t.split() for o in out):
                out.append(t)
        return out[:limit]


def find_acronyms(texts: list[str]) -> dict[str, str]:
    """{ACRONYM: expansion, expansion: ACRONYM} for "long form (LF)" definitions whose initials match."""
    out: dict[str, str] = {}
    for text in texts:
        for m in ACRONYM.finditer(text):
            acr = m.group(2).rstrip("s") if m.group(2).endswith("s") and m.group(2)[:-1].isupper() else m.group(2)
            before = m.group(1).split()
            letters = [c for c in acr if c.isupper()]
            for n in range(len(letters), min(len(before), len(letters) + 2) + 1):
                phrase = before[-n:]
                initials = "".join(w[0] for part in phrase for w in part.split("-") if w).upper()
                if initials.startswith("".join(letters)) or "".join(letters) == "".join(w[0] for w in phrase).upper():
                    long = " ".join(phrase).lower().strip(",;:")
                    out.setdefault(acr, long)
                    out.setdefault(long, acr)
                    break
    return out


def vocabulary(paragraphs: list[dict]) -> Terms:
    """Weights of every candidate term of the paragraphs ({text, section} rows of the catalogue)."""
    tf: Counter = Counter()
    sections: dict[str, set[str]] = {}
    langs: Counter = Counter()
    for p in paragraphs:
        lang = language(p["text"])
        langs[lang] += 1
        ws = words(p["text"])
        grams = ws + [f"{a} {b}" for a, b in zip(ws, ws[1:])]
        tf.update(grams)
        for g in set(grams):
            sections.setdefault(g, set()).add(p["section"] or p["source_path"])
    lang = langs.most_common(1)[0][0] if langs else "en"
    for term in [t for t in tf if t.endswith("s") and t[:-1] in tf]:  # curate's patterns match plurals
        tf[term[:-1]] += tf.pop(term)
        sections[term[:-1]] |= sections.pop(term)
    terms = Terms(acronyms=find_acronyms([p["text"] for p in paragraphs]))
    common: dict[str, float] = {}
    for term, count in tf.items():
        parts = term.split(" ")
        if len(parts) == 2 and count < 2:
            continue  # a two-word term must recur to be a term
        z = [common.setdefault(w, zipf(w, lang)) for w in parts]
        if any(len(w) < 3 or zv >= (STOP_ZIPF if len(parts) == 1 else BIGRAM_WORD_ZIPF) for w, zv in zip(parts, z)):
            continue
        if len(parts) == 1 and z[0] >= COMMON_ZIPF:
            continue
        rarity = 8.0 - (zipf(term, lang) if len(parts) == 2 else z[0])
        if len(parts) == 2 and min(z) >= COMMON_ZIPF:
            rarity *= 0.5  # two common words ("data set") make a weaker term than a rare one
        terms.rarity[term] = rarity
        terms.weight[term] = math.log1p(count) * rarity * math.sqrt(len(sections[term]))
    return terms


def covered(keywords: list[str], paragraphs: list[dict]) -> set[str]:
    """Ids of the paragraphs a keyword selects as curate does: named in the text or in a section title."""
    patterns = keyword_patterns(tuple(keywords))
    return {p["id"] for p in paragraphs if any(pat.search(p["text"]) or pat.search(p["section"])
                                               for _, pat in patterns)}


def propose(paragraphs: list[dict], terms: Terms) -> tuple[list[str], set[str]]:
    """(keywords, ids of the paragraphs they select): the TOP_BY_WEIGHT weightiest terms, then a greedy cover
    (the term that selects the most paragraphs not yet selected), then section titles' own terms, up to
    MAX_KEYWORDS."""
    ranked = sorted(terms.weight, key=lambda t: (-terms.weight[t], t))
    chosen: list[str] = []
    for t in ranked:
        if len(chosen) >= TOP_BY_WEIGHT:
            break
        if not any(t in c.split() or c in t.split() for c in chosen):
            chosen.append(t)
    hits = {t: covered([t], paragraphs) for t in ranked[:400]}
    done = covered(chosen, paragraphs)
    while len(chosen) < MAX_KEYWORDS:
        best = max(hits, key=lambda t: (len(hits[t] - done), terms.weight[t], t), default=None)
        if best is None or not hits[best] - done:
            break
        chosen.append(best)
        done |= hits.pop(best)
    for title in sorted({s.strip() for p in paragraphs for s in p["section"].split(">") if s.strip()}):
        if len(chosen) >= MAX_KEYWORDS:
            break
        best = terms.in_text(title, 1)
        if best and best[0] not in chosen:
            chosen.append(best[0])
    return chosen, covered(chosen, paragraphs)
