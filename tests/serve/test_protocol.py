"""The chat-completions request as the server reads it: defaults, roles, and options it refuses."""

from __future__ import annotations

import json

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


@pytest.mark.parametrize("field,value,message", [
    ("seed", 10**30, "less than or equal to 18446744073709551615"),
    ("seed", -(2**70), "greater than or equal to -9223372036854775808"),
    ("max_tokens", 10**30, "less than or equal to 32768"),
    ("max_completion_tokens", 10**9, "less than or equal to 32768"),
    ("temperature", float("nan"), "finite number"),
    ("top_p", float("inf"), "finite number"),
    ("stop", ["x" * 201], "at most 200 characters"),
    ("model", "m" * 201, "at most 200 characters"),
    ("messages", USER * 1025, "at most 1024 items"),
])
def test_every_number_and_list_is_bounded_on_both_sides(field, value, message):
    with pytest.raises(ValidationError, match=message):
        ChatRequest(**{"model": "m", "messages": USER, field: value})


def test_nan_written_in_the_json_body_is_refused():
    body = '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}'
    with pytest.raises(ValidationError, match="finite number"):
        ChatRequest.model_validate_json(body)


@pytest.mark.parametrize("field,value", [
    ("logprobs", True), ("top_logprobs", 5), ("response_format", {"type": "json_object"}),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "x"}}), ("presence_penalty", 0.5),
    ("frequency_penalty", -1), ("logit_bias", {"42": 100}), ("tool_choice", "auto"), ("modalities", ["audio"]),
])
def test_fields_the_server_cannot_honour_are_refused_naming_them(field, value):
    with pytest.raises(ValidationError) as err:
        ChatRequest(model="m", messages=USER, **{field: value})
    (error,) = err.value.errors()
    assert error["type"] == "unsupported_field" and error["ctx"]["field"] == field
    assert "leave it out" in error["msg"]


@pytest.mark.parametrize("field,value", [
    ("logprobs", False), ("top_logprobs", None), ("response_format", {"type": "text"}), ("presence_penalty", 0),
    ("user", "someone"), ("tool_choice", "none"), ("metadata", {"a": "b"}), ("store", False),
])
def test_harmless_fields_are_accepted(field, value):
    ChatRequest(model="m", messages=USER, **{field: value})


def test_content_parts_are_bounded_but_long_text_is_the_context_checks_business():
    ChatRequest(model="m", messages=[{"role": "user", "content": "x" * 100_000}])
    with pytest.raises(ValidationError, match="at most 256 items"):
        ChatRequest(model="m", messages=[{"role": "user", "content": [{"type": "text", "text": "x"}] * 257}])


@pytest.mark.parametrize("text", ["", " kernel", 'a "quoted" }, {"content": ""} \\ line\nbreak',
                                  "é ∑ 量子 😀\x00"])
def test_a_content_frame_around_the_dumped_text_is_the_dumped_chunk_byte_for_byte(text):
    from jobs.serve.protocol import chunk, content_frame

    for model in ("smoke", 'odd "content": "" model'):
        prefix, suffix = content_frame("chatcmpl-1", model, 1_700_000_000)
        framed = prefix + json.dumps(text) + suffix
        assert framed == json.dumps(chunk("chatcmpl-1", model, {"content": text}, created=1_700_000_000))
        assert json.loads(framed)["choices"][0]["delta"] == {"content": text}
