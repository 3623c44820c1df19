"""Plain-text helpers that curate, synthesize and `make new` share: the language guess, the sentence split, the
keyword patterns curate selects by, and the section titles that are not content.

The language guess counts common function words (English vs Spanish, the two languages of the sources); a
text with neither counts as English. Sentences keep a display equation ($$...$$ on its own lines) whole,
attached to the sentence that introduces it.
"""

from __future__ import annotations

import hashlib
import re

DISPLAY = re.compile(r"^\$\$\n.*?\n\$\$$\n?", re.S | re.M)
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-ZÁÉÍÓÚÑ¿¡$])")
STOP_ES = re.compile(r"\b(el|la|los|las|que|del|para|una|con|por|como|se)\b", re.I)
STOP_EN = re.compile(r"\b(the|and|that|with|for|this|are|is|of|which)\b", re.I)
LANGUAGES = {"en": "English", "es": "Spanish"}
# Sections that list sources or thank people: keyword hits there are citations, not explanations.
NON_CONTENT = re.compile(r"^(references?|bibliograph|bibliografía|referencias|acknowledg|agradecimientos|"
                         r"índice|contents|table of contents|list of|glosario|licen[cs]e)", re.I)


def language(text: str) -> str:
    """'es' or 'en'."""
    return "es" if len(STOP_ES.findall(text)) > len(STOP_EN.findall(text)) else "en"


def sentences(text: str) -> list[str]:
    """Sentences of a paragraph; a display equation stays whole, attached to the sentence that introduces it."""
    out, pos = [], 0
    for m in DISPLAY.finditer(text):
        out += [s for s in SENTENCE.split(text[pos:m.start()].strip()) if s.strip()]
        block = "\n" + m.group(0).strip("\n") + "\n"
        if out:
            out[-1] += block
        else:
            out.append(block.lstrip("\n"))
        pos = m.end()
    return out + [s for s in SENTENCE.split(text[pos:].strip()) if s.strip()]


def phrasing(options: list[str], key: str) -> str:
    """One of `options`, chosen by a hash of `key`: deterministic variety (the wording depends on the paragraph
    and the slot, not on a random state), so curate and synthesis rerun byte-identical."""
    return options[int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % len(options)]


def keyword_patterns(keywords: tuple[str, ...]) -> list[tuple[str, re.Pattern]]:
    """One case-insensitive pattern per keyword: whole words, spaces or hyphens between words, plural allowed."""
    out = []
    for kw in keywords:
        words = [re.escape(w) for w in re.split(r"[\s-]+", kw.strip()) if w]
        out.append((kw, re.compile(r"(?<!\w)" + r"[\s-]+".join(words) + r"(?:s|es)?(?!\w)", re.I)))
    return out
