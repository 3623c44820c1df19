"""Draft eval questions from the documents' own sentences, offline (no model): across every section, a question
about a stated fact, a reference answer, the concepts an answer must name (with synonyms), the section's topic and
the paragraph id. Every question is `status: draft` until a person reviews it (`make review`).

  fact       a sentence of 8-45 words that ends a statement and names distinctive terms; a definition ("X is a
             ...") asks "What is X?", any other fact asks what the section says about its weightiest term.
  reference  the sentence condensed to its content words, never the sentence itself: curate's leakage check
             removes every training example that nearly copies a suite's answer (5-word shingles), and a verbatim
             reference would strip the build of the very paragraph it must learn.
  concepts   the fact's weightiest terms not already in the question, with their plural, hyphen and acronym forms.
  abstain    a few questions whose answer the documents do not hold (checked: none of their telltale words occur
             in the documents), so the model is measured on saying so.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

from jobs.core.text.prose import NON_CONTENT, sentences
from jobs.new.keywords import Terms, zipf

FUNCTION_ZIPF = 5.6  # words at least this frequent in general use are dropped from a condensed reference
DEFINITION = re.compile(r"^(?:An?|The)?\s*(?P<x>[^,;:()$]{3,60}?)\s+(?P<verb>is|are|refers to|denotes|means)\s+"
                        r"(?:an?|the|one)?\s*\S", re.I)
NOT_SUBJECT_START = {"for", "in", "on", "at", "with", "by", "from", "to", "as", "if", "when", "since", "because",
                     "while", "although", "though", "after", "before", "once", "since", "unlike", "like", "here"}
SUBJECT_GLUE = {"the", "a", "an", "of", "for", "in", "and", "on", "to"}
VERB_LIKE = re.compile(r"(ing|ed|ly)$")  # a concept is a thing named, not an action (a heuristic, no tagger)
VAGUE_START = re.compile(r"^(this|these|that|those|it|they|here|such|we|our|in this|in the following)\b", re.I)
# Questions whose answers documents about one subject rarely hold: (question, words that must not occur in them)
ABSTAIN = (
    ("Who funded the work these documents describe, and under which grant number?", r"fund|grant|sponsor|acknowledg"),
    ("What was the total cost, in euros, of the work described in these documents?", r"cost|euro|€|price|budget"),
    ("In which city was the work in these documents first presented at a conference?",
     r"conference|symposium|workshop|city|presented at"),
    ("What is the patent number of the method these documents describe?", r"patent"),
    ("How many citations had these documents received by 2030?", r"citation|cited"),
)
ABSTAIN_REFERENCE = "The documents do not say; the model should answer that it is not in the documents."


@dataclass
class Item:
    """One drafted question, with what it was drafted from (the sentence and its paragraph)."""

    id: str
    question: str
    reference: str
    concepts: list[dict]
    topic: str
    source: str
    paragraph: dict  # the catalogue row
    sentence: str
    how: str = "extractive"
    extra: dict = field(default_factory=dict)

    def to_yaml(self) -> dict:
        out = {"id": self.id, "question": self.question, "reference": self.reference, "concepts": self.concepts,
               "topic": self.topic, "source": self.source, "paragraphs": [self.paragraph["id"]], "status": "draft"}
        if not self.paragraph:  # a user's pair that no paragraph matched
            del out["paragraphs"]
        if not self.source:
            del out["source"]
        return out


def topic_levels(catalogue: list[dict]) -> dict[str, int]:
    """Per document, the section level that names its topics: the first level with two or more titles (a
    document under one title, "My thesis > Kernels", takes its topics from the second level)."""
    titles: dict[str, list[set[str]]] = {}
    for r in catalogue:
        parts = [t.strip() for t in r["section"].split(" > ")] if r["section"] else []
        levels = titles.setdefault(r["source_path"], [])
        for i, t in enumerate(parts):
            if len(levels) <= i:
                levels.append(set())
            levels[i].add(t)
    return {doc: next((i for i, ts in enumerate(levels) if len(ts) > 1), 0) for doc, levels in titles.items()}


def topic_of(row: dict, level: int = 0) -> str:
    """The section title at `level` (topic_levels) as a topic slug (the document's name where it has none)."""
    parts = [t.strip() for t in row["section"].split(" > ")] if row["section"] else []
    top = (parts[min(level, len(parts) - 1)] if parts else "") or \
        row["source_path"].rsplit("/", 1)[-1].rsplit(".", 1)[0]
    text = unicodedata.normalize("NFKD", top).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"^\d+(\.\d+)*\.?\s*", "", text)  # "2.1 Kernels" -> "kernels"
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40].strip("-") or "general"


def usable(row: dict, min_chars: int) -> bool:
    return row["kind"] == "prose" and len(row["text"]) >= min_chars and not any(
        NON_CONTENT.match(s.strip()) for s in row["section"].split(">"))


def condense(sentence: str, lang: str) -> str:
    """The sentence's content words in order (numbers and math kept), function words out."""
    kept = []
    sentence = re.sub(r"\(?https?://\S+\)?|`", "", sentence)  # links and code ticks are not what an answer says
    for token in re.findall(r"\$[^$]*\$|[\w'’-]+|[.,;:](?=\s|$)", sentence):
        if token in ".,;:":
            if kept and kept[-1] not in ".,;:":
                kept.append(token)
            continue
        if token.startswith("$") or any(c.isdigit() for c in token) or zipf(token.lower(), lang) < FUNCTION_ZIPF:
            kept.append(token)
    text = " ".join(kept).strip(" ,;:")
    text = re.sub(r"\s+([.,;:])", r"\1", text)
    return (text[0].upper() + text[1:]).rstrip(".") + "." if text else ""


def plural(term: str) -> str:
    if re.search(r"[^aeiou]y$", term):
        return term[:-1] + "ies"
    return term + ("es" if re.search(r"(s|x|z|ch|sh)$", term) else "s")


def concept(term: str, terms: Terms) -> dict:
    forms = []
    if "'" in term:
        pass
    elif term.endswith("ies"):
        forms.append(term[:-3] + "y")
    elif term.endswith("s") and not term.endswith("ss"):
        forms.append(term[:-1])
    else:
        forms.append(plural(term))
    if "-" in term:
        forms.append(term.replace("-", " "))
    elif " " in term:
        forms.append(term.replace(" ", "-"))
    for key in (term, term.upper()):
        if key in terms.acronyms:
            forms.append(terms.acronyms[key])
    return {"name": term, "synonyms": sorted({f for f in forms if f and f != term})}


def pick(key: str, options: tuple[str, ...]) -> str:
    return options[int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % len(options)]


def question_for(sentence: str, row: dict, terms: Terms) -> tuple[str, list[str]] | None:
    """(question, the fact's terms a right answer should name), or None when the sentence makes no question."""
    found = terms.in_text(sentence, 6)
    if not found:
        return None
    nouns = [t for t in found if " " in t or not VERB_LIKE.search(t)]
    found = (nouns or found)[:4]
    m = DEFINITION.match(sentence)
    subject_words = m.group("x").lower().split() if m else []
    if m and len(subject_words) <= 6 and subject_words[0] not in NOT_SUBJECT_START and terms.in_text(m.group("x"), 1) \
            and all(w in SUBJECT_GLUE or zipf(w, row["language"]) < FUNCTION_ZIPF for w in subject_words):
        subject = m.group("x").strip()
        verb = {"is": "is", "are": "are"}.get(m.group("verb").lower(), "does")
        q = f"What {verb} {subject[0].lower() + subject[1:] if not subject[:2].isupper() else subject}" + (
            f" {m.group('verb').lower()}?" if verb == "does" else "?")
        rest = [t for t in found if t not in subject.lower()]
        return q, rest or found[:1]
    section = (row["section"].split(" > ")[-1].strip() or row["source_path"].rsplit("/", 1)[-1])
    section = re.sub(r"^\d+(\.\d+)*\.?\s*", "", section)
    main = found[0]
    q = pick(row["id"] + sentence, (f"What do the documents say about {main} in “{section}”?",
                                    f"In “{section}”, what is stated about {main}?",
                                    f"What does the section “{section}” state about {main}?"))
    return q, found[1:] or found[:1]


def facts(row: dict, terms: Terms) -> list[tuple[float, str]]:
    """(score, sentence) for the sentences of a paragraph that state a fact, best first."""
    out = []
    for s in sentences(row["text"]):
        s = " ".join(s.split())
        n = len(s.split())
        if not 8 <= n <= 45 or not s.endswith(".") or "?" in s or s[:1].islower() or s.count("$") > 6:
            continue
        found = terms.in_text(s, 4)
        if not found:
            continue
        score = sum(terms.rarity[t] for t in found) + (3.0 if DEFINITION.match(s) else 0.0)
        score -= 4.0 if VAGUE_START.match(s) else 0.0
        out.append((score, s))
    return sorted(out, key=lambda x: (-x[0], x[1]))


def draft(catalogue: list[dict], terms: Terms, selectable: set[str], target: int, min_chars: int) -> list[Item]:
    """Round-robin over sections in document order: each round takes every section's best remaining fact (one
    question per paragraph), until `target` questions or no fact is left. Only paragraphs the keywords select
    (`selectable`) are asked about: the build must be taught what it is measured on."""
    by_section: dict[tuple[str, str], list[tuple[float, str, dict]]] = {}
    for row in catalogue:
        if row["id"] in selectable and usable(row, min_chars):
            key = (row["source_path"], row["section"])
            by_section.setdefault(key, []).extend((sc, s, row) for sc, s in facts(row, terms))
    for cands in by_section.values():
        cands.sort(key=lambda x: (-x[0], x[1]))
    levels = topic_levels(catalogue)
    items: list[Item] = []
    used: set[str] = set()
    counts: dict[str, int] = {}
    while len(items) < target and any(by_section.values()):
        for key in list(by_section):
            cands = by_section[key]
            while cands and len(items) < target:
                _, sentence, row = cands.pop(0)
                if row["id"] in used:
                    continue
                made = question_for(sentence, row, terms)
                reference = condense(sentence, row["language"])
                if made is None or len(reference.split()) < 4:
                    continue
                question, concept_terms = made
                topic = topic_of(row, levels.get(row["source_path"], 0))
                counts[topic] = counts.get(topic, 0) + 1
                items.append(Item(id=f"{topic[:40]}-{counts[topic]:02d}", question=question, reference=reference,
                                  concepts=[concept(t, terms) for t in concept_terms[:3]], topic=topic,
                                  source=row["source_path"], paragraph=row, sentence=sentence))
                used.add(row["id"])
                break
    return items


def abstain_items(catalogue: list[dict], wanted: int = 3) -> list[dict]:
    """Up to `wanted` questions none of whose telltale words occur anywhere in the documents."""
    text = "\n".join(r["text"] + " " + r["section"] for r in catalogue).lower()
    out = []
    for question, telltale in ABSTAIN:
        if len(out) < wanted and not re.search(telltale, text):
            out.append({"id": f"abstain-{len(out) + 1:02d}", "question": question, "reference": ABSTAIN_REFERENCE,
                        "expect": "abstain", "topic": "out-of-scope", "status": "draft"})
    return out


def section_coverage(catalogue: list[dict], items: list[Item], min_chars: int) -> tuple[int, int]:
    """(sections with a question, sections with at least one usable paragraph)."""
    sections = {(r["source_path"], r["section"]) for r in catalogue if usable(r, min_chars)}
    asked = {(i.paragraph["source_path"], i.paragraph["section"]) for i in items}
    return len(asked & sections), len(sections)


def leaks(items: list[Item], catalogue: list[dict], threshold: float) -> list[dict]:
    """The paragraphs whose training examples the leakage check would remove because a drafted question or
    reference nearly copies them: [{question, field, paragraph, overlap}] (empty when the draft is clean)."""
    from jobs.core.text.leakage import LeakageCheck
    from jobs.core.spec.suite import parse_suite

    suite = parse_suite({"name": "draft", "questions": [i.to_yaml() for i in items]}, "draft")
    check = LeakageCheck([suite], threshold)
    out = []
    for row in catalogue:
        hit = check.find(row["text"])
        if hit:
            out.append({"question": hit["eval_question"], "field": hit["field"], "paragraph": row["id"],
                        "overlap": hit["overlap"]})
    return out


def keep_clean(items: list[Item], catalogue: list[dict], threshold: float) -> tuple[list[Item], list[dict]]:
    """Drop the drafted questions the leakage check would act on (a user's own pairs stay: the report says which
    paragraphs they would keep out of training); returns (items kept, every finding)."""
    found = leaks(items, catalogue, threshold)
    bad = {f["question"] for f in found}
    return [i for i in items if i.id not in bad or i.how == "user"], found
