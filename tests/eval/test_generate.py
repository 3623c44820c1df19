"""What eval asks of the engine: the suite's questions as chats with the dataset's system prompt."""

from __future__ import annotations

from jobs.eval.generate import conversations


def test_questions_become_chats_with_the_system_prompt_first():
    assert conversations(["Q1?", "Q2?"], "Be brief.") == [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q1?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q2?"}]]
    assert conversations(["Q?"], None) == [[{"role": "user", "content": "Q?"}]]
