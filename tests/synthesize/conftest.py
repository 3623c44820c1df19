"""Synthesis fixtures: a scripted OpenAI-compatible endpoint on loopback, a small curated dataset folder, and
specs whose writer is that endpoint."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jobs.core.spec.schema import SynthesizeSpec, WriterSpec

# One section, and no held-out split (synth_spec: eval_fraction 0), so every paragraph is on the training side.
# Each paragraph triggers one behaviour of the scripted writer below.
DOC = """# Kernel estimation

The swap test estimates the overlap of two states with one ancilla qubit and a controlled swap between the registers.

A fidelity kernel compares two inputs by the overlap of the states that a feature map prepares for each of them.

The kernel estimate needs 8192 shots per entry on the device, so that the sampling error stays below one percent.

Readout errors bias every kernel entry towards the all-zeros outcome, which error mitigation has to correct.

Depolarizing noise shrinks every off-diagonal kernel value towards the same constant as the circuits get deeper.
"""
FACT = re.compile(r'Fact:\n"""\n(.*?)\n"""', re.S)
PARAGRAPH = re.compile(r'Paragraph:\n"""\n(.*?)\n"""', re.S)


def scripted(prompt: str) -> str:
    """Deterministic replies: Yes to every fact, option 1 for every cloze, and per fact one behaviour."""
    if "Answer Yes or No" in prompt:
        return "Yes"
    if "Reply with its number only" in prompt:
        return "1."
    if "Rewrite the paragraph" in prompt:
        return "Put differently: " + PARAGRAPH.search(prompt).group(1)
    fact = FACT.search(prompt).group(1)
    if "swap test" in fact:
        return '{"question": "What does the swap test need?", "answer": "One ancilla'  # malformed JSON
    if "Readout" in fact:
        return json.dumps({"question": "What should I cook tonight?",
                           "answer": "Boil the pasta for nine minutes, then toss it with butter and some cheese."})
    if "8192" in fact:
        return json.dumps({"question": "How many shots does each kernel entry need?",
                           "answer": "Each kernel entry needs 4096 shots on the device."})
    if "fidelity kernel" in fact:  # data/eval/core.yaml qk-01, nearly word for word
        return json.dumps({"question": "What is a fidelity quantum kernel?",
                           "answer": "It compares two inputs by the overlap of the states a feature map prepares."})
    form = "why" if "why- or how-question" in prompt else "what"
    return json.dumps({"question": f"In this section, {form} does the text say about depolarizing noise?",
                       "answer": fact if form == "what" else "As the circuits get deeper, " + fact})


class Endpoint:
    """A chat-completions server on 127.0.0.1: `script(prompt) -> reply`; `fail` makes the next N requests
    answer 500; `delay_s` makes every request slow; `refuse` answers every request with that HTTP status.
    Counts the requests it received."""

    def __init__(self, script=scripted):
        self.script, self.fail, self.delay_s, self.refuse, self.requests = script, 0, 0.0, 0, 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests += 1
                    failing = outer.fail > 0
                    outer.fail -= failing
                time.sleep(outer.delay_s)
                if failing or outer.refuse:
                    self._send(outer.refuse or 500, {"error": {"message": "scripted failure", "type": "scripted"}})
                    return
                reply = outer.script(body["messages"][-1]["content"])
                self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": reply}}]})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that timed out and hung up: expected in the slow-endpoint test

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint():
    e = Endpoint()
    yield e
    e.server.shutdown()
    e.server.server_close()


def synth_spec(spec, url: str, **fields):
    """The smoke spec with an openai writer at `url`, fast retries, and some synthesize fields changed."""
    writer = WriterSpec(kind="openai", model="scripted", base_url=url, retries=2, backoff_s=0.05, timeout_s=5.0)
    y = dataclasses.replace(SynthesizeSpec(writer=writer, questions_per_fact=2, paraphrases=1, min_similarity=0.4),
                            **fields)
    curate = dataclasses.replace(spec.curate, semantic_selection=False, min_paragraph_chars=60, eval_fraction=0.0)
    return dataclasses.replace(spec, curate=curate, synthesize=y)


@pytest.fixture
def curated(smoke_spec, tiny_model, tmp_path, monkeypatch):
    """A curated folder from DOC, and a fresh store for the synthesis cache."""
    from jobs.curate.run import curate

    monkeypatch.setenv("QSLM_STORE", str(tmp_path / "store"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "k.md").write_text(DOC)
    spec = synth_spec(smoke_spec, "http://unused")
    curate(spec, tmp_path / "curated", [tmp_path / "docs"], quiet=True)
    return tmp_path / "curated"
