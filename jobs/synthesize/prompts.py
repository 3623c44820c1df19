"""The writer's protocol (PROMPT_VERSION; bump it whenever a prompt's text changes, which invalidates the cache).

Per training paragraph, with its context:
  fact     per sentence: "does it state a fact?", a choice between Yes and No. Facts are the paragraph's own
           sentences, so a fact is grounded by construction whatever the writer is.
  cloze    per fact: which phrase of it (a number, a formula, a named term) is the thing to remember, a choice
           among candidates taken from the sentence; the example asks for the blanked phrase.
  qa       per fact, K times: one question and its answer, free text as JSON, in the audience and form of slot k.
  para     per paragraph, M times: a rewrite in other words, free text.
Choices are constrained by construction: the engine scores each option's likelihood and takes the best; an
endpoint must reply with one of the options. Choice prompts show the paragraph without its context, to stay
within the engine's scoring window (1,024 tokens). Free text goes through the filters (filters.py).
"""

from __future__ import annotations

import re

from jobs.core.text.prose import LANGUAGES, phrasing
from jobs.core.text.prose import sentences

PROMPT_VERSION = "1"
SYSTEM = ("You help turn a researcher's documents into study material. You use only what the text says, keep "
          "equations in LaTeX between $ signs and code as code.")
FACT_OPTIONS = ("Yes", "No")
AUDIENCE_WORDS = {"researcher": "a researcher in the field", "engineer": "an engineer who implements it",
                  "student": "a student who is new to the subject"}
FORMS = ("a what-question", "a why- or how-question",
         "a question about the exact value, formula or condition it states")
STYLES = ("in different words, as a textbook would explain it",
          "in different words, reordering its sentences where the meaning allows")
MIN_UNIT_CHARS = 25  # shorter "sentences" are headings, labels or list stubs, not facts
MAX_BLANKS = 6  # cloze candidates offered per fact
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?:\s?%|\s?(?:qubits?|shots?|layers?|GHz|MHz|kHz|µs|ms|ns))?")
INLINE_MATH = re.compile(r"(?<![$\\])\$[^$\n]+\$(?!\$)")
ACRONYM = re.compile(r"\b[A-Z][A-Z0-9]+(?:-[A-Za-z0-9]+)*\b")
CLOZE = {"en": ("Fill in the blank in this statement from \"{t}\": {s}", "{a}\n\nThe statement reads: {u}"),
         "es": ("Completa el hueco de esta afirmación de \"{t}\": {s}", "{a}\n\nLa afirmación completa: {u}")}
PARAPHRASE_ASK = {
    "en": ["What does \"{t}\" say about {c}?", "Explain {c} as \"{t}\" presents it.",
           "Tell me what \"{t}\" explains about {c}."],
    "es": ["¿Qué dice \"{t}\" sobre {c}?", "Explica {c} tal como lo presenta \"{t}\"."],
}


def units(text: str) -> list[str]:
    """The paragraph's fact candidates: its sentences (a display equation stays with its sentence)."""
    return [u.strip() for u in sentences(text) if len(u.strip()) >= MIN_UNIT_CHARS]


def _material(p: dict, context: bool = True) -> str:
    before = "\n\n".join(c["text"] for c in p["before"]) if context else ""
    after = "\n\n".join(c["text"] for c in p["after"]) if context else ""
    return (f"Section: {p['section'] or p['source_path']}\n"
            + (f"Context before:\n\"\"\"\n{before}\n\"\"\"\n" if before else "")
            + f"Paragraph:\n\"\"\"\n{p['text']}\n\"\"\"\n"
            + (f"Context after:\n\"\"\"\n{after}\n\"\"\"\n" if after else ""))


def chat(user: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def fact_prompt(p: dict, unit: str) -> list[dict]:
    return chat(_material(p, context=False) + f"\nSentence:\n\"\"\"\n{unit}\n\"\"\"\n\nDoes this sentence "
                "state a fact on its own: a definition, a result, a number, a method, a cause or a condition? "
                "Answer No if it only announces, points to a figure or a section, or cites. Answer Yes or No.")


def blanks(unit: str, keywords: tuple[str, ...]) -> list[str]:
    """Phrases of a fact worth asking for: formulas, numbers, spec keywords, acronyms (in order, no repeats)."""
    found = [(m.start(), m.group(0)) for m in INLINE_MATH.finditer(unit)]
    found += [(m.start(), m.group(0).strip()) for m in NUMBER.finditer(unit)]
    for kw in keywords:
        m = re.search(r"(?<!\w)" + re.escape(kw) + r"(?!\w)", unit, re.I)
        if m:
            found.append((m.start(), m.group(0)))
    found += [(m.start(), m.group(0)) for m in ACRONYM.finditer(unit)]
    out: list[str] = []
    for _, phrase in sorted(found, key=lambda f: (f[0], -len(f[1]))):
        if phrase not in out and len(phrase) < len(unit) // 2 and not any(phrase in o for o in out):
            out.append(phrase)
    return out[:MAX_BLANKS]


def cloze_prompt(p: dict, unit: str, options: list[str]) -> list[dict]:
    listing = "\n".join(f"{i}. {o}" for i, o in enumerate(options, 1))
    return chat(_material(p, context=False) + f"\nSentence:\n\"\"\"\n{unit}\n\"\"\"\n\nWhich of these "
                f"phrases of the sentence carries what a reader must remember? Reply with its number only.\n{listing}")


def qa_prompt(p: dict, unit: str, audience: str, k: int) -> list[dict]:
    return chat(_material(p) + f"\nFact:\n\"\"\"\n{unit}\n\"\"\"\n\nWrite one question that this fact answers, "
                f"as {AUDIENCE_WORDS[audience]} would ask it ({FORMS[k % len(FORMS)]}), and its answer in two to "
                f"four sentences, using only the paragraph and its context. Write both in "
                f"{LANGUAGES[p['language']]}, in your own words, not copying the paragraph. "
                "Reply with JSON only: {\"question\": \"...\", \"answer\": \"...\"}")


def paraphrase_prompt(p: dict, m: int) -> list[dict]:
    return chat(_material(p) + f"\nRewrite the paragraph {STYLES[m % len(STYLES)]}. Keep every fact, number, "
                f"equation and piece of code; add nothing that it does not say. Write in "
                f"{LANGUAGES[p['language']]}. Reply with the rewritten paragraph only.")


def title(p: dict) -> str:
    return p["section"].split(" > ")[-1] if p["section"] else p["source_path"].rsplit("/", 1)[-1]


def cloze_messages(p: dict, unit: str, phrase: str) -> tuple[str, str]:
    ask, answer = CLOZE[p["language"]]
    blanked = unit.replace(phrase, "____", 1)
    return ask.format(t=title(p), s=blanked), answer.format(a=phrase, u=unit)


def paraphrase_question(p: dict, m: int) -> str:
    concept = p["keywords"][0] if p["keywords"] else title(p)
    return phrasing(PARAPHRASE_ASK[p["language"]], f"{p['id']}:{m}").format(t=title(p), c=concept)
