"""Numbers, symbols and equations a text states that its sources do not."""

from __future__ import annotations

import pytest

from jobs.core.text.grounding import absent, equations, normalise_number, numbers, symbols

SOURCE = (r"On eight qubits the simulated diagonal averaged $0.64$ and the measured one $0.59$. "
          r"The coherence time obeys $1/T_2 = 1/(2 T_1) + 1/T_\phi$, measured with 1,000 shots per point.")


@pytest.mark.parametrize("raw, norm", [("0.640", "0.64"), ("1,000", "1000"), ("0,5", "0.5"), ("2.0", "2"),
                                       ("007", "7"), ("12", "12"), ("0.0", "0")])
def test_numbers_compare_by_value_as_written(raw, norm):
    assert normalise_number(raw) == norm


def test_numbers_ignore_indices_of_symbols():
    assert numbers("T1 and T_2 relax within 87 us; CNOT count 60, version v2.0") == {"87", "60"}
    assert numbers("values 3, 5 and 7") == {"3", "5", "7"}


def test_symbols_fold_index_notation_and_greek_spellings():
    assert symbols(r"T1, T_1 and T_{1}") == {"t1"}
    assert symbols(r"$\lambda$ and λ, $\varphi$ and φ") == {"lambda", "phi"}
    assert symbols("Qwen2 answers") == set()  # a name with a digit inside a word is not an indexed symbol


def test_equations_need_a_relation_and_ignore_spacing():
    found = equations(r"so $k = q^2 k + (1 - q^2)/d$ for the state $\rho$, and \[ \hat{k} = N_0 / N \]")
    assert set(found) == {"k=q^2k+(1-q^2)/d", r"\hatk=N_0/N"}
    assert found[r"\hatk=N_0/N"] == r"\hat{k} = N_0 / N"


def test_a_fabricated_number_symbol_and_equation_are_absent():
    answer = r"The device measured 0.640 on eight qubits, T_3 was 87 us, and $T_2 \le 3 T_1$ holds."
    assert absent(answer, [SOURCE]) == [r"T_2 \le 3 T_1", "87", "t3"]


def test_what_the_sources_state_is_not_absent():
    answer = r"With 1000 shots the diagonal was 0.59; $1/T_2 = 1/(2T_1) + 1/T_{\phi}$ relates T2, T1 and φ."
    assert absent(answer, [SOURCE]) == []
    assert absent("Between 0 and 1, with 2 states.", []) == []  # 0, 1 and 2 are never checked
