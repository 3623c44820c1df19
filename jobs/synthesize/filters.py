"""What a writer's reply must pass to become an example, in order:
  malformed      free text that is not the asked format (JSON with a question and an answer; an option)
  length         question and answer within synthesize.question_chars / answer_chars; a paraphrase within
                 synthesize.paraphrase_ratio of its paragraph's length
  language       the same language as the paragraph
  ungrounded     a number, a symbol or an equation that the paragraph and its context do not state
                 (jobs/core/text/grounding.py, the check eval's faithfulness uses too)
  off_topic      MiniLM cosine to the paragraph with its context below synthesize.min_similarity
  leakage        a near copy of a question or reference answer of any eval suite
  near_duplicate a near copy of another synthetic example (word 5-shingles, curate.near_duplicate_threshold)
"""

from __future__ import annotations

import re

from jobs.core.text.grounding import absent
from jobs.core.text.prose import language
from jobs.core.engine.writers import OVERSIZED, TOO_LONG, parse_qa

FILTERS = ("malformed", "length", "language", "ungrounded", "off_topic", "leakage", "near_duplicate")
def parse_choice(reply: str, options: tuple[str, ...]) -> str | None:
    """The option a reply names: the reply is the option, perhaps quoted or followed by punctuation or words."""
    first = re.split(r"[\s.,;:!)\]\"']+", reply.strip().strip("\"'*(["), maxsplit=1)[0].lower()
    return next((o for o in options if o.lower() == first), None)


def reply_limit(r) -> int:
    """The most characters a reply to request `r` can honestly have: its max_new_tokens at 16 characters a token
    (Qwen's longest common tokens are shorter), plus room for a JSON wrapper."""
    return 256 + 16 * r.max_new_tokens


def malformed(r, reply) -> bool:
    """Whether a reply is not what request `r` asked for (the `malformed` filter, judged before caching): not
    text, longer than reply_limit, a stand-in (TOO_LONG, OVERSIZED), not one of the options, or for a Q&A not
    JSON with a question and an answer. The cache keeps such a reply marked malformed, never as a success."""
    if not isinstance(reply, str) or len(reply) > reply_limit(r) or reply in (TOO_LONG, OVERSIZED):
        return True
    if r.options:
        return parse_choice(reply, r.options) is None
    if r.shape == "qa":
        return parse_qa(reply) is None
    return not reply.strip()


def check_text(kind: str, question: str, answer: str, p: dict, spec) -> tuple[str, str] | None:
    """(filter, why) for the first filter before the similarity one that a candidate fails, or None."""
    y = spec.synthesize
    if kind == "paraphrase":
        low, high = y.paraphrase_ratio
        ratio = len(answer) / max(1, len(p["text"]))
        if not low <= ratio <= high:
            return "length", f"{ratio:.2f} times the paragraph's length, outside {low}-{high}"
    else:
        for what, text, (low, high) in (("question", question, y.question_chars), ("answer", answer, y.answer_chars)):
            if not low <= len(text) <= high:
                return "length", f"{what} of {len(text)} chars, outside {low}-{high}"
    if language(answer) != p["language"]:
        return "language", f"written in {language(answer)}, the paragraph in {p['language']}"
    missing = absent(question + "\n" + answer, [p["text"]] + [c["text"] for c in p["before"] + p["after"]])
    if missing:
        return "ungrounded", f"states {', '.join(missing[:3])}, which the paragraph and its context do not"
    return None
