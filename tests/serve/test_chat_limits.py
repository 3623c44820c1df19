"""The terminal chat refuses one message (or /system) that the context cannot hold, says why and by how much,
and keeps the conversation; the engine is never asked to generate for it."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from jobs.serve import ask
from jobs.serve.chat import Chat, TooLong


class CountingEngine:
    """One token per character of every message; answers "ok" and records what it was asked."""

    context = 2048

    def __init__(self):
        self.streamed = []

    def prompt_ids(self, conversations):
        return [[0] * sum(len(t["content"]) + 4 for t in c) for c in conversations]

    def stream(self, conversation, adapter, sampling):
        self.streamed.append(conversation)
        yield SimpleNamespace(text="ok", generation=SimpleNamespace(text="ok", new_tokens=1, finish_reason="stop"))


@pytest.fixture
def chat():
    build = SimpleNamespace(tag="t1", system_prompt=lambda audience=None: "Be exact.",
                            spec=SimpleNamespace(base_model=SimpleNamespace(id="base")))
    return Chat(build, CountingEngine(), SimpleNamespace(max_new_tokens=256), embed_loader=lambda: None)


def test_a_message_over_the_context_is_refused_by_how_much_and_the_history_kept(chat):
    assert "".join(chat.ask("What is a kernel?")) == "ok"
    kept = list(chat.history)
    with pytest.raises(TooLong) as err:
        chat.ask("x" * 5_000_000)
    message = str(err.value)
    assert "message of 5,000,000 characters not taken" in message and "5,000,028 characters" in message
    assert "over by at least 4,942,684 characters" in message
    with pytest.raises(TooLong) as err:
        chat.ask("x" * 50_000)  # inside the character bound: counted in tokens
    message = str(err.value)
    assert "50,044 tokens, 48,252 more than the 1,792" in message and "/reset" in message
    assert chat.history == kept and len(chat.engine.streamed) == 1
    assert "".join(chat.ask("And a feature map?")) == "ok" and len(chat.history) == 4


def test_a_system_message_over_the_context_is_refused_and_the_old_one_kept(chat):
    _, text = chat.command("/system " + "s" * 1_000_000)
    assert "system message of 1,000,000 characters not taken" in text and chat.system == "Be exact."
    _, text = chat.command("/system Answer briefly.")
    assert chat.system == "Answer briefly." and "Answer briefly." in text


def test_the_repl_goes_on_after_a_refused_message(chat, monkeypatch):
    lines = iter(["hello", "y" * 10_000, "again", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    out = io.StringIO()
    ask.repl(chat, out)
    text = out.getvalue()
    assert "message of 10,000 characters not taken" in text and text.count("t1> ok") == 2
    assert [t["content"] for t in chat.history] == ["hello", "ok", "again", "ok"]


@pytest.mark.parametrize("args, expected", [
    (["--seed", str(10**30)], "--seed 1000000000000000000000000000000 is outside"),
    (["--temperature", "nan"], "--temperature nan is outside [0.0, 2.0]"),
    (["--top-p", "0"], "--top-p 0.0 is outside"),
    (["--max-new-tokens", "0"], "--max-new-tokens 0 is outside [1, 32768]"),
    (["--system", "s" * 1_000_001], "--system is 1,000,001 characters"),
])
def test_the_one_shot_command_checks_its_numbers_before_loading_anything(args, expected, capsys, monkeypatch,
                                                                         tmp_path):
    monkeypatch.setenv("QSLM_STORE", str(tmp_path / "store"))
    assert ask.main(["-q", "hello", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ask: error: ") and expected in err and "Traceback" not in err
