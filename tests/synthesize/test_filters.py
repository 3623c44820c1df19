"""The text filters alone: format, length, language, grounding (no model needed)."""

from __future__ import annotations

from jobs.synthesize import filters, prompts


def test_parse_qa_accepts_json_and_a_fence_and_refuses_the_rest():
    assert filters.parse_qa('```json\n{"question": "Why?", "answer": "Because."}\n```') == ("Why?", "Because.")
    assert filters.parse_qa('Sure! {"question": "Why?", "answer": "Because."}') == ("Why?", "Because.")
    for bad in ('{"question": "Why?", "answer": "Bec', '{"question": "Why?"}', '["Why?", "Because."]',
                '{"question": "", "answer": "x"}', "kernel noise Hilbert"):
        assert filters.parse_qa(bad) is None, bad


def test_parse_choice_takes_the_option_named_first():
    assert filters.parse_choice("Yes.", ("Yes", "No")) == "Yes"
    assert filters.parse_choice('"no", because it cites', ("Yes", "No")) == "No"
    assert filters.parse_choice("2. the number", ("1", "2", "3")) == "2"
    assert filters.parse_choice("Maybe", ("Yes", "No")) is None and filters.parse_choice("", ("1",)) is None


def test_grounding_finds_numbers_symbols_and_equations_the_source_does_not_state():
    source = "With $\\rho(x)$ on 8 qubits the value is 0.25:\n$$\nk(x, y) = \\mathrm{Tr}[\\rho(x)\\rho(y)]\n$$"
    assert filters.ungrounded("It is 0.250 on eight qubits, $\\mathrm{Tr}[\\rho\\rho]$.", source) is None
    assert "0.3" in filters.ungrounded("It is 0.3.", source)
    assert "\\sigma" in filters.ungrounded("It uses $\\sigma$.", source)
    assert "equation" in filters.ungrounded("$$\nk(x, y) = \\rho(x)\n$$", source)


def test_blanks_are_phrases_of_the_fact():
    unit = "On 8 qubits the fidelity kernel of a NISQ device falls to $1/2^n$ for deep circuits."
    assert prompts.blanks(unit, ("fidelity", "kernel")) == ["8 qubits", "fidelity", "kernel", "NISQ", "$1/2^n$"]
    assert prompts.units("Short. " + unit) == [unit]  # "Short." is no fact candidate
