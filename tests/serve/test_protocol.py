"""The chat-completions request as the server reads it: defaults, roles, and options it refuses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobs.serve.protocol import ChatRequest, error_body

USER = [{"role": "user", "content": "What is a quantum kernel?"}]


def test_defaults_are_the_decoding_eval_scored_with():
    req = ChatRequest(model="smoke", messages=USER)
    assert (req.temperature, req.top_p, req.stop, req.stream, req.max_tokens) == (0.0, 1.0, (), False, None)
    assert not req.has_system() and req.turns() == USER


def test_roles_and_content_parts_become_chat_template_turns():
    req = ChatRequest(model="m", messages=[
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "NISQ?"}]},
        {"role": "assistant", "content": "Noisy hardware."}, {"role": "user", "content": "More?", "name": "x"}],
        stop="\n\n", user="someone", logprobs=False)
    assert req.has_system() and req.stop == ("\n\n",)
    assert req.turns() == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is NISQ?"},
                           {"role": "assistant", "content": "Noisy hardware."}, {"role": "user", "content": "More?"}]


@pytest.mark.parametrize("field,value,message", [
    ("n", 2, "n must be 1"),
    ("tools", [{"type": "function", "function": {"name": "f"}}], "tool calls are not supported"),
    ("stop", ["a", "b", "c", "d", "e"], "at most 4 non-empty stop sequences"),
    ("temperature", 2.5, "less than or equal to 2"),
    ("top_p", 0, "greater than 0"),
    ("max_tokens", 0, "greater than or equal to 1"),
])
def test_options_that_would_change_the_answer_are_refused_not_dropped(field, value, message):
    with pytest.raises(ValidationError, match=message):
        ChatRequest(model="m", messages=USER, **{field: value})


def test_errors_have_openais_shape():
    assert error_body("bad", param="messages", code="x") == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "messages", "code": "x"}}
