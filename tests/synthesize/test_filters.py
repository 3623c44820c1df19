"""The text filters alone: format, length, language, grounding (no model needed)."""

from __future__ import annotations

from jobs.core.engine.writers import parse_qa
from jobs.synthesize import filters, prompts


def test_parse_qa_accepts_json_and_a_fence_and_refuses_the_rest():
    assert parse_qa('```json\n{"question": "Why?", "answer": "Because."}\n```') == ("Why?", "Because.")
    assert parse_qa('Sure! {"question": "Why?", "answer": "Because."}') == ("Why?", "Because.")
    for bad in ('{"question": "Why?", "answer": "Bec', '{"question": "Why?"}', '["Why?", "Because."]',
                '{"question": "", "answer": "x"}', "kernel noise Hilbert"):
        assert parse_qa(bad) is None, bad


def test_parse_choice_takes_the_option_named_first():
    assert filters.parse_choice("Yes.", ("Yes", "No")) == "Yes"
    assert filters.parse_choice('"no", because it cites', ("Yes", "No")) == "No"
    assert filters.parse_choice("2. the number", ("1", "2", "3")) == "2"
    assert filters.parse_choice("Maybe", ("Yes", "No")) is None and filters.parse_choice("", ("1",)) is None


def test_text_filters_in_order_length_language_grounding(smoke_spec):
    import dataclasses

    from jobs.core.spec.schema import SynthesizeSpec

    spec = dataclasses.replace(smoke_spec, synthesize=SynthesizeSpec())
    p = {"text": "On 8 qubits the off-diagonal kernel values fall to 0.031 under depolarizing noise, which "
                 "flattens the Gram matrix $K$ with $\\rho(x)$.", "language": "en", "before": [], "after": []}
    ok = "Under depolarizing noise the off-diagonal values of the kernel fall to 0.031 on 8 qubits."
    assert filters.check_text("fact-qa", "What happens to the values?", ok, p, spec) is None
    assert filters.check_text("fact-qa", "Why?", ok, p, spec)[0] == "length"
    es = "Con ruido despolarizante los valores de la matriz caen a 0.031 para los qubits del dispositivo."
    assert filters.check_text("fact-qa", "What happens to the values?", es, p, spec)[0] == "language"
    bad = filters.check_text("fact-qa", "What happens at 16 qubits?", ok.replace("0.031", "0.004"), p, spec)
    assert bad[0] == "ungrounded" and "0.004" in bad[1] and "16" in bad[1]
    assert filters.check_text("paraphrase", "", "Too short.", p, spec)[0] == "length"


def test_blanks_are_phrases_of_the_fact():
    unit = "On 8 qubits the fidelity kernel of a NISQ device falls to $1/2^n$ for deep circuits."
    assert prompts.blanks(unit, ("fidelity", "kernel")) == ["8 qubits", "fidelity", "kernel", "NISQ", "$1/2^n$"]
    assert prompts.units("Short. " + unit) == [unit]  # "Short." is no fact candidate
