"""Phrase drafted questions as a person would ask them, with a writer (jobs/core/engine/writers.py: the base model
through the engine, or an OpenAI-compatible teacher), filtered for grounding. A phrasing is kept only when
  - the reply is JSON with a question (ending in "?") and an answer, of sane lengths;
  - the answer states no number, symbol or equation its paragraph does not (jobs/core/text/grounding.py);
  - the answer is no near copy of the paragraph (the leakage check would strip the paragraph's examples).
Otherwise the extractive draft stays, and the count says why.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from jobs.core.text.grounding import absent
from jobs.core.text.neardup import shingles
from jobs.core.engine.writers import Request, parse_qa
from jobs.new.draft import Item

PROMPT = ("Here is a passage from a researcher's documents.\n\n{paragraph}\n\nA reader wants to check that someone "
          "understood this statement from it: \"{sentence}\"\n\nWrite the question a person would ask to test it "
          "(without quoting the statement), and a short answer in your own words, one or two sentences, using only "
          "the passage. Reply with JSON only: {{\"question\": \"...\", \"answer\": \"...\"}}")
SYSTEM = "You write exam questions about a researcher's documents. You use only what the text says."
QUESTION_CHARS = (12, 300)
ANSWER_CHARS = (20, 600)


def requests(items: list[Item], max_new_tokens: int = 200, seed: int = 0) -> list[Request]:
    out = []
    for i in items:
        text = i.paragraph["text"]
        out.append(Request(messages=[{"role": "system", "content": SYSTEM},
                                     {"role": "user", "content": PROMPT.format(paragraph=text, sentence=i.sentence)}],
                           options=(), temperature=0.3, top_p=0.95, max_new_tokens=max_new_tokens, seed=seed,
                           paragraph_sha256=hashlib.sha256(text.encode()).hexdigest()))
    return out


def verdict(reply: str, item: Item, threshold: float) -> tuple[str, str] | str:
    """(question, answer) to keep, or the reason it is refused."""
    qa = parse_qa(reply)
    if qa is None:
        return "malformed"
    question, answer = qa
    if not question.endswith("?") or not QUESTION_CHARS[0] <= len(question) <= QUESTION_CHARS[1] \
            or not ANSWER_CHARS[0] <= len(answer) <= ANSWER_CHARS[1]:
        return "length"
    if absent(question + "\n" + answer, [item.paragraph["text"]]):
        return "ungrounded"
    probe = shingles(answer)
    if probe and len(probe & shingles(item.paragraph["text"])) / len(probe) >= threshold:
        return "copies the paragraph"
    return question, answer


def phrase(items: list[Item], writer, threshold: float) -> Counter:
    """Ask the writer for every item; replace question and reference where the phrasing passes. Returns the
    count of outcomes ("phrased" and each reason for keeping the extractive draft)."""
    replies: dict[int, str] = {}
    writer.run(requests(items), lambda i, reply: replies.__setitem__(i, reply))
    outcome: Counter = Counter()
    for k, item in enumerate(items):
        result = verdict(replies.get(k, ""), item, threshold)
        if isinstance(result, str):
            outcome[result] += 1
            continue
        item.question, item.reference = result
        item.how = "writer"
        outcome["phrased"] += 1
    return outcome
