"""What a text states that its sources do not: numbers, symbols and equations, compared as normalised strings.

    from jobs.core.text.grounding import absent
    absent("T1 was 87 us, so 1/T2 = 1/(2T_1)", ["... $T_1$ of 120 microseconds ..."])  # -> ["87"]

A fact that a model invents usually carries a specific value: a number, a symbol or a formula the documents
never state. Checking those literally is cheap, explainable and catches what sentence similarity misses
("T1 is 87 us" and "T1 is 120 us" are near-identical sentences). Eval's faithfulness check uses it on answers;
synthesis can use it to keep generated examples grounded in their paragraph.

- numbers: 0.640 = 0.64, 1,000 = 1000, a decimal comma is a decimal point; 0, 1 and 2 are not checked (they
  occur in generic statements: "between 0 and 1", "2 states").
- symbols: a letter with an index (T1, T_1, T_{1} are all `t1`), Greek letters (λ and \\lambda are `lambda`).
- equations: a LaTeX math span ($...$, $$...$$, \\(...\\), \\[...\\]) with a relation (=, <, >, \\le, \\approx, ...),
  compared without spaces, braces and spacing commands. Plain-text formulas are checked through their numbers and
  symbols.
"""

from __future__ import annotations

import re
from typing import Iterable

TRIVIAL_NUMBERS = frozenset({"0", "1", "2"})
GREEK = ("alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi omicron pi "
         "rho varrho sigma tau upsilon phi varphi chi psi omega").split()
GREEK_BY_CHAR = dict(zip("αβγδεζηθικλμνξοπρστυφχψωϕϵϑ", "alpha beta gamma delta epsilon zeta eta theta iota kappa "
                         "lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega phi epsilon theta".split()))

MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)
RELATION = re.compile(r"=|<|>|\\le|\\ge|\\leq|\\geq|\\approx|\\sim|\\propto|\\neq|≈|≤|≥")
NUMBER = re.compile(r"(?<![A-Za-z_\d.])\d{1,3}(?:,\d{3})+(?![\d,])|(?<![A-Za-z_\d.,])\d+(?:[.,]\d+)?")
INDEXED = re.compile(r"(?<![A-Za-z\\])([A-Za-z]{1,3})(?:_\{?([A-Za-z0-9]{1,8})\}?|(\d{1,3}))(?![A-Za-z0-9])")
LATEX_GREEK = re.compile(r"\\(" + "|".join(sorted(GREEK, key=len, reverse=True)) + r")(?![A-Za-z])")
MATH_NOISE = re.compile(r"\\left|\\right|\\[,;:! ]|\\displaystyle|[{}\s]")


def normalise_number(raw: str) -> str:
    """'0.640' -> '0.64', '1,000' -> '1000', '0,5' -> '0.5', '2.0' -> '2', '007' -> '7'."""
    if re.fullmatch(r"\d{1,3}(,\d{3})+", raw):
        raw = raw.replace(",", "")
    whole, _, frac = raw.replace(",", ".").partition(".")
    whole, frac = whole.lstrip("0") or "0", frac.rstrip("0")
    return f"{whole}.{frac}" if frac else whole


def numbers(text: str) -> set[str]:
    return {normalise_number(m.group()) for m in NUMBER.finditer(text)}


def symbols(text: str) -> set[str]:
    """Indexed letters and Greek letters, normalised: {'t1', 'lambda'}."""
    found = {(m.group(1) + (m.group(2) or m.group(3))).lower() for m in INDEXED.finditer(text)}
    found |= {m.group(1).removeprefix("var") for m in LATEX_GREEK.finditer(text)}
    found |= {GREEK_BY_CHAR[c].removeprefix("var") for c in text if c in GREEK_BY_CHAR}
    return found


def _math_key(span: str) -> str:
    return MATH_NOISE.sub("", span)


def equations(text: str) -> dict[str, str]:
    """Math spans that state a relation: {normalised key: the span as written}."""
    out = {}
    for m in MATH.finditer(text):
        span = next(g for g in m.groups() if g is not None)
        if RELATION.search(span):
            out[_math_key(span)] = span.strip()
    return out


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9]*", text)}


def absent(text: str, sources: Iterable[str]) -> list[str]:
    """Numbers, symbols and equations that `text` states and no source states, as written in `text`."""
    sources = list(sources)
    joined = "\n".join(sources)
    known_numbers = numbers(joined)
    known_symbols = symbols(joined) | _words(joined)
    source_math = _math_key("".join(next(g for g in m.groups() if g is not None) for m in MATH.finditer(joined)))
    missing = [key_text for key, key_text in equations(text).items() if key not in source_math]
    outside = MATH.sub(" ", text) if missing else text  # numbers inside a flagged equation are not listed twice
    missing += sorted(n for n in numbers(outside) - known_numbers if n not in TRIVIAL_NUMBERS)
    missing += sorted(symbols(outside) - known_symbols)
    return missing
