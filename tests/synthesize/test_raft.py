"""RAFT examples: the oracle among distractors the retriever ranks highest (training side only), the answer quoting
and citing the oracle by its number, and a share without the oracle answered that the passages do not say."""

from __future__ import annotations

from jobs.core.retrieval.rag import NOT_COVERED
from jobs.core.retrieval.hybrid import Index, write_index
from jobs.core.spec.load import load_spec
from jobs.synthesize import raft
from tests.core.retrieval.test_hybrid import bag_embed, row

CATALOGUE = [row(f"doc.md#kernels#p{i}", f"Kernel fact number {i}: the kernel value {i} is concentrated.")
             for i in range(8)] + [row("doc.md#heldout#p0", "Held-out kernel text never enters a prompt.",
                                       split="eval")]


def example(text: str, pid: str) -> dict:
    return {"id": pid + "-x", "template": "fact-qa", "origin": "synthetic", "writer": "w", "source_path": "doc.md",
            "source_sha256": "0" * 64, "section": "Kernels", "paragraph_ids": [pid], "keywords": [],
            "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "It is concentrated."}]}


def test_raft_examples(tmp_path, monkeypatch):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("base_model: {id: x}\ncurate: {keywords: [kernel]}\neval: {suite: data/eval/core.yaml}\nretrieval: {embedders: [minilm]}\n"
                         "synthesize: {raft: {distractors: 2, without_oracle: 0.5, per_paragraph: 1}}\n"
                         "train: {max_length: 4096}\n")
    spec = load_spec(spec_file)

    def fake_index(spec, catalogue, folder):
        write_index([r for r in catalogue if r["split"] == "train"], folder, {"minilm": bag_embed})
        return Index.load(folder, {"minilm": bag_embed})

    monkeypatch.setattr(raft, "_index", fake_index)
    train = [example(f"What is kernel fact {i}?", f"doc.md#kernels#p{i}") for i in range(8)]
    train.append(example("About held-out text?", "doc.md#heldout#p0"))  # not training side: never an oracle
    rows, counts = raft.examples(spec, CATALOGUE, train, lambda t: len(t.split()))
    assert counts["paragraphs"] == 8 and counts["examples"] == 8 and 0 < counts["without_oracle"] < 8
    for r in rows:
        user, answer = r["messages"][0]["content"], r["messages"][1]["content"]
        assert "Held-out" not in user and r["template"] == "raft" and user.startswith("Passages:\n[1] ")
        assert "\n\n[2] " in user  # the oracle and a distractor, or two distractors
        if answer == NOT_COVERED:
            assert r["paragraph_ids"][0] not in r["paragraph_ids"][1:] and f"{r['paragraph_ids'][0]}\n" not in user
        else:
            n = answer.rsplit("[", 1)[1].rstrip("]")
            oracle_text = CATALOGUE[int(r["paragraph_ids"][0][-1])]["text"]
            assert f"[{n}] doc.md > Kernels\n{oracle_text}" in user and oracle_text[:20] in answer
    # a budget too small for any passage leaves the example out (never a bare question answered NOT_COVERED)
    tight, counts = raft.examples(spec, CATALOGUE, train[:2], lambda t: 10_000)
    assert tight == [] and counts["too_long"] == 2
