"""Memorised vs generalised, with a scripted model: which training questions are asked, how they are reworded,
how answers are scored and what the verdict says."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from jobs.eval import probes

from .test_faithfulness import bag_of_words


@dataclass
class Gen:
    text: str
    new_tokens: int
    stopped: bool = True


def example(i: int, question: str, answer: str, system: str | None = None) -> dict:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"id": f"ex{i}", "template": "define", "messages": messages, "paragraph_ids": [f"d.md#s#p{i}"]}


EXAMPLES = [example(0, "Define amplitude damping.", "Amplitude damping is energy loss to the ground state.",
                    system="You are assisting a quantum computing researcher."),
            example(1, "How are noise and fidelity related?", "Noise lowers the fidelity of every kernel entry."),
            example(2, "Summarise the results.", "Readout mitigation raised test accuracy from 0.74 to 0.80.")]


def memoriser(conversations, adapter, max_new_tokens):
    """The adapter recites its training answers to the exact training question and nothing else; the base says
    nothing; asked to reword, the base proposes a rewording only for the first question."""
    answers = {e["messages"][-2]["content"]: e["messages"][-1]["content"] for e in EXAMPLES}
    out = []
    for conv in conversations:
        user = conv[-1]["content"]
        if user.startswith("Rewrite the following question"):
            out.append(Gen("Define what amplitude damping is." if "amplitude" in user else "Summarise.", 5))
        elif adapter and user in answers:
            words = answers[user].split()
            out.append(Gen(" ".join(words[:max_new_tokens]), min(len(words), max_new_tokens),
                           stopped=len(words) <= max_new_tokens))
        else:
            out.append(Gen("", 0))
    return out


def test_sample_is_stable_and_seeded():
    many = [example(i, f"q{i}?", "a") for i in range(40)]
    first = [e["id"] for e in probes.sample(many, 5, seed=0)]
    assert first == [e["id"] for e in probes.sample(list(reversed(many)), 5, seed=0)]  # order of the file is moot
    assert first != [e["id"] for e in probes.sample(many, 5, seed=1)]
    assert len(probes.sample(many, 100, 0)) == 40 and probes.sample(many, 0, 0) == []


@pytest.mark.parametrize("question, reworded", [
    ("Define amplitude damping.", "Could you explain what amplitude damping means?"),
    ("What is meant by kernel-target alignment?", "Could you explain what kernel-target alignment means?"),
    ("How are noise and fidelity related?", "What links noise and fidelity?"),
    ('Explain the role of kernel in "Shot noise".', 'Regarding "Shot noise": what part does kernel play there?'),
    ("¿Qué es el ruido?", 'A colleague asks you: "¿Qué es el ruido?" What do you tell them?'),
])
def test_template_rewordings(question, reworded):
    assert probes.template_reword(question) == reworded


def test_a_proposed_rewording_must_keep_the_meaning_and_change_the_words():
    q = "Define amplitude damping."
    assert probes.accept_reword(q, "What is meant by amplitude damping?", 0.85)
    assert not probes.accept_reword(q, "define amplitude damping", 0.99)  # the same words
    assert not probes.accept_reword(q, "What is zero-noise extrapolation?", 0.3)  # another question
    assert not probes.accept_reword(q, "Sure! Here it is:\nWhat is amplitude damping?", 0.9)  # chatter
    assert not probes.accept_reword(q, "", 1.0)


def test_memorising_adapter_is_right_verbatim_and_wrong_reworded():
    rows = probes.run(EXAMPLES, memoriser, bag_of_words, max_new_tokens=64)
    assert [r["reword_method"] for r in rows] == ["engine", "template", "template"]
    assert rows[0]["reworded_question"] == "Define what amplitude damping is."
    assert rows[1]["reworded_question"] == "What links noise and fidelity?"
    assert all(r["verbatim"]["adapter"]["right"] and r["verbatim"]["adapter"]["similarity"] > 0.99 for r in rows)
    assert not any(r["reworded"]["adapter"]["right"] or r["verbatim"]["base"]["right"] for r in rows)
    summary = probes.summary(rows, [{"expect": "answer", "adapter": {"right": False, "similarity": 0.1},
                                     "base": {"right": False, "similarity": 0.1}}])
    assert summary["adapter"] == {"verbatim": 1.0, "reworded": 0.0, "heldout": 0.0, "similarity": pytest.approx(
        {"verbatim": 1.0, "reworded": 0.0, "heldout": 0.1})}
    assert summary["reworded_by"] == {"engine": 1, "template": 2}
    assert summary["verdict"].startswith("Memorised without transfer")


def test_an_answer_cut_at_the_limit_is_compared_with_as_much_of_the_trained_answer():
    rows = probes.run(EXAMPLES[:1], memoriser, bag_of_words, max_new_tokens=4)  # "Amplitude damping is energy"
    assert rows[0]["verbatim"]["adapter"]["answer"] == "Amplitude damping is energy"
    assert rows[0]["verbatim"]["adapter"]["similarity"] > 0.99


def test_verdicts():
    def s(v, r, h, bv=0.0):
        return {"probes": 8, "adapter": {"verbatim": v, "reworded": r, "heldout": h},
                "base": {"verbatim": bv, "reworded": 0.0, "heldout": 0.0}}
    assert probes.verdict(s(0.1, 0.0, 0.0)).startswith("The adapter did not take the facts in")
    assert probes.verdict(s(0.9, 0.2, 0.1)).startswith("Memorised without transfer")
    assert probes.verdict(s(0.8, 0.7, 0.6)).startswith("Generalises")
    assert probes.verdict({"probes": 0, "adapter": {"verbatim": float("nan")}, "base": {}}).startswith("No training")
