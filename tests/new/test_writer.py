"""`make new WRITER=openai`: drafts phrased by an OpenAI-compatible endpoint (a scripted one on loopback), kept
only when grounded; the documents' text goes out only after `make new` has said so."""

from __future__ import annotations

import json

import pytest

from jobs.core.spec.suite import load_suite
from jobs.new.run import new
from tests.synthesize.conftest import Endpoint


def script(prompt: str) -> str:
    if "Varroa destructor is a parasitic mite" in prompt.split("understood this statement")[1]:
        return json.dumps({"question": "What harm does the varroa mite do to a colony?",
                           "answer": "It feeds on the bees and spreads deformed wing virus in the colony."})
    if "queen" in prompt.split("understood this statement")[1]:  # an answer with a number the text lacks
        return json.dumps({"question": "When does a virgin queen mate?",
                           "answer": "She mates 512 days after she emerges, on a warm afternoon."})
    return "I cannot help with that."


@pytest.fixture
def endpoint(monkeypatch):
    e = Endpoint(script)
    monkeypatch.setenv("QSLM_WRITER_BASE_URL", e.url)
    monkeypatch.setenv("QSLM_WRITER_MODEL", "scripted")
    yield e
    e.server.shutdown()
    e.server.server_close()


def test_a_writer_phrases_drafts_and_ungrounded_ones_stay_extractive(notes, data, endpoint, capsys):
    summary = new("phrased", notes, writer="openai", like="smoke", questions=12, data=data)
    out = capsys.readouterr().out
    said = out.index("will receive the text of")
    assert said < out.index("drafting: phrased by the writer openai:scripted")
    assert endpoint.requests >= 2
    assert "phrased by the writer openai:scripted@unpinned: 1 of" in summary["writer"]
    assert "ungrounded)" in summary["writer"] and "malformed" in summary["writer"]
    questions = {q.question: q for q in load_suite(data / "eval" / "phrased.yaml").questions}
    q = questions["What harm does the varroa mite do to a colony?"]
    assert q.reference.startswith("It feeds on the bees") and q.status == "draft" and q.concepts
    assert "When does a virgin queen mate?" not in questions  # ungrounded: the extractive draft stayed
