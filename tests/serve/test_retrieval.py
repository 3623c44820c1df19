"""Retrieval in ask and serve, without a model: the last user turn in the shared layout within the context, the
sources listing, and the per-request switch (body field, server default, the build's spec)."""

from __future__ import annotations

import pytest

from jobs.core.retrieval.rag import NOT_COVERED
from jobs.core.retrieval.hybrid import Index, write_index
from jobs.serve import ServeError
from jobs.serve.retrieval import Retriever, augment, request_switch
from tests.core.retrieval.test_hybrid import ROWS, bag_embed


@pytest.fixture()
def retriever(tmp_path):
    write_index(ROWS, tmp_path / "index", {"minilm": bag_embed})
    return Retriever(Index.load(tmp_path / "index", {"minilm": bag_embed}), k=2, default=True)


def test_the_last_question_gets_numbered_passages_and_the_sources_list_them(retriever):
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "earlier"},
             {"role": "assistant", "content": "ok"}, {"role": "user", "content": "What does depolarizing noise do?"}]
    out, sources = augment(turns, retriever, context=2048, max_new_tokens=64, count=lambda t: len(t.split()))
    assert out[:3] == turns[:3] and out[3]["content"].startswith("Passages:\n[1] ")
    assert "Question: What does depolarizing noise do?" in out[3]["content"] and NOT_COVERED in out[3]["content"]
    assert [s["n"] for s in sources] == [1, 2] and sources[0]["id"] == "doc.md#noise#p0"
    assert set(sources[0]) == {"n", "id", "paragraph_ids", "file", "section", "page"}
    tight, none = augment(turns, retriever, context=80, max_new_tokens=64, count=lambda t: len(t.split()))
    assert none == [] and tight[3]["content"] == turns[3]["content"]  # no room: the question alone


def test_the_request_field_wins_over_the_server_and_the_spec(retriever):
    assert request_switch({}, None, retriever) is True  # the spec's default
    assert request_switch({}, False, retriever) is False  # the server's --retrieval off
    assert request_switch({"retrieval": True}, False, retriever) is True
    assert request_switch(None, None, None) is False  # a build without an index answers from its weights
    with pytest.raises(ServeError, match="no retrieval index"):
        request_switch({"retrieval": True}, None, None)
    with pytest.raises(ServeError, match="true or false"):
        request_switch({"retrieval": "yes"}, None, retriever)
