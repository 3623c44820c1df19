"""`ask` on a real smoke build: one-shot, the chat in a real terminal (pexpect), history, audiences, sources."""

from __future__ import annotations

import subprocess
import sys

import pexpect
import pytest

from jobs.core.spec.audiences import audience_prompt
from jobs.core.engine.generation import Sampling
from jobs.serve.chat import Chat
from jobs.serve.nearest import SourceIndex, passages
from tests.serve.conftest import QUESTION, REPO

pytestmark = pytest.mark.slow
NOTE = r"\((a blank answer, )?\d+ new tokens, finish: (stop|length)\)"


def _ask(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.serve.ask", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def test_one_shot_prints_the_adapters_answer_and_says_what_it_loaded(smoke_store, smoke_engine):
    engine, (smoke, _) = smoke_engine
    done = _ask(smoke_store, "--tag", "smoke", "-q", QUESTION)
    assert done.returncode == 0, done.stderr
    expected = engine.chat([[{"role": "user", "content": QUESTION}]], "smoke",
                           Sampling(max_new_tokens=smoke.spec.eval.max_new_tokens))[0]
    assert done.stdout == expected.text + "\n"  # the answer alone on stdout: it can be piped
    assert "build smoke (passed its eval gate)" in done.stderr
    assert "base tiny-qwen2 (nf4, float32 compute)" in done.stderr and f"engine {engine.path}" in done.stderr
    assert f"{expected.new_tokens} new tokens, finish: {expected.finish_reason})" in done.stderr


def test_a_failed_gate_build_can_be_asked_but_is_labelled(smoke_store, smoke_engine):
    engine, _ = smoke_engine
    done = _ask(smoke_store, "--tag", "smoke-loud", "-q", QUESTION)
    assert done.returncode == 0, done.stderr
    assert "build smoke-loud (FAILED its eval gate: similarity 0.0000 < minimum 0.5000; it can be asked but not " \
           "promoted)" in done.stderr
    loud = engine.chat([[{"role": "user", "content": QUESTION}]], "smoke-loud", Sampling(max_new_tokens=32))[0]
    assert loud.text and done.stdout == loud.text + "\n"


def test_the_chat_in_a_real_terminal(smoke_store):
    # Sampled (seeded): the tiny model's greedy answers are blank, and /sources needs words to compare.
    child = pexpect.spawn(sys.executable, ["-m", "jobs.serve.ask", "--tag", "smoke", "--temperature", "1",
                                           "--seed", "2"], cwd=str(REPO),
                          env=smoke_store, encoding="utf-8", timeout=300, dimensions=(50, 220))
    child.expect(r"build smoke \(passed its eval gate\)")
    for question in (QUESTION, "How is it computed on hardware?"):
        child.expect_exact("you> ")
        child.sendline(question)
        child.expect_exact("smoke> ")
        child.expect(NOTE)
    child.expect_exact("you> ")
    child.sendline("/base")
    child.expect_exact("adapter smoke> ")  # the adapter's last answer, then the base's beside it
    child.expect_exact("base tiny-qwen2> ")
    child.expect(NOTE)
    child.expect_exact("you> ")
    child.sendline("/sources")
    child.expect(r"\d\.\d\d  data/raw/\S+#\S+#p\d+")  # score, paragraph id
    child.expect(r"data/raw/\S+\.(tex|md) > ")  # file > section
    child.expect_exact("you> ")
    child.sendline("/reset")
    child.expect_exact("(conversation forgotten)")
    child.expect_exact("you> ")
    child.sendline("/base")
    child.expect_exact("(ask a question first")
    child.expect_exact("you> ")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_the_chat_keeps_its_history_and_steers_by_audience(smoke_engine):
    engine, (smoke, _) = smoke_engine
    sampling = Sampling(max_new_tokens=8)
    chat = Chat(smoke, engine, sampling, embed_loader=lambda: None)
    first = "".join(chat.ask(QUESTION))
    second = "".join(chat.ask("Why?"))
    assert [t["role"] for t in chat.history] == ["user", "assistant", "user", "assistant"]
    assert chat.history[1]["content"] == first
    assert second == engine.chat([chat.history[:3]], "smoke", sampling)[0].text  # asked with the whole history
    chat.command("/audience student es")
    assert chat.system == audience_prompt("student", "es")
    assert chat.command("/audience wizard")[1].startswith("(usage: /audience researcher|engineer|student")
    chat.command("/system Be terse.")
    assert chat.system == "Be terse."
    chat.command("/system")
    assert chat.system is None  # the smoke spec has no curate.system_prompt: the base template's default applies


def test_audience_prompts_are_worded_as_in_training(smoke_engine):
    _, (smoke, _) = smoke_engine
    import pyarrow.parquet as pq

    rows = pq.read_table(smoke.artifact("dataset") / "train.parquet", columns=["messages", "template"]).to_pylist()
    trained = {r["messages"][0]["content"] for r in rows if r["template"] == "researcher"}
    assert smoke.system_prompt(audience_prompt("researcher", "en")) in trained


def test_sources_finds_the_paragraph_an_answer_came_from(smoke_engine):
    from jobs.core.text.embed import load_embedder

    _, (smoke, _) = smoke_engine
    index = SourceIndex(smoke.artifact("dataset"), load_embedder("cpu"))
    found = passages(smoke.artifact("dataset"))
    assert len(found) == len({p.ids for p in found}) > 10
    target = next(p for p in found if len(p.ids) == 1 and p.file.endswith(".tex"))
    score, nearest = index.nearest(target.text, k=3)[0]
    assert nearest == target and score > 0.99


def test_the_chat_answers_from_retrieved_passages_and_lists_them(smoke_engine, tmp_path):
    """Retrieval on: the question goes to the model in the shared layout with the build's passages (an index over the
    dataset's catalogue; a hashing embedder stands in for MiniLM), the sources follow; /retrieval off: plain."""
    import pyarrow.parquet as pq

    from jobs.core.retrieval.rag import user_turn
    from jobs.core.retrieval.hybrid import Index, write_index
    from jobs.serve.retrieval import Retriever
    from tests.core.retrieval.test_hybrid import bag_embed

    engine, (smoke, _) = smoke_engine
    write_index(pq.read_table(smoke.artifact("dataset") / "catalogue.parquet").to_pylist(), tmp_path / "index",
                {"minilm": bag_embed})
    retriever = Retriever(Index.load(tmp_path / "index", {"minilm": bag_embed}), k=2, default=True)
    sampling = Sampling(max_new_tokens=8)
    chat = Chat(smoke, engine, sampling, embed_loader=lambda: None, retriever=retriever)
    assert chat.retrieval
    answer = "".join(chat.ask(QUESTION))
    hits = [h.passage for h in retriever.index.search(QUESTION, 2)]
    assert [s["id"] for s in chat.last_sources] == [p.id for p in hits]
    asked = [{"role": "user", "content": user_turn(QUESTION, hits)}]
    assert answer == engine.chat([asked], "smoke", sampling)[0].text
    assert chat.history[0]["content"] == QUESTION  # the history keeps the question, not the passages
    assert chat.command("/sources")[1].startswith("Sources:\n  [1] ")
    assert chat.command("/retrieval off")[1] == "(retrieval off)"
    "".join(chat.ask("Why?"))
    assert chat.last_sources == []


def test_a_gpu_out_of_memory_is_one_line_that_says_what_to_do(smoke_store, monkeypatch, capsys):
    """A card that also drives a display runs out mid-load: ask says so in one line, no traceback."""
    import torch

    from jobs.serve import ask

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.17 GiB.")
    monkeypatch.setenv("QSLM_STORE", smoke_store["QSLM_STORE"])
    monkeypatch.setattr(ask, "load_engine", out_of_memory)
    assert ask.main(["--tag", "smoke", "-q", QUESTION]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ask: error: the GPU ran out of memory")
    assert err.rstrip().endswith("or ask on the CPU (--device cpu) (torch: CUDA out of memory. Tried to allocate "
                                 "1.17 GiB.)")
