"""Synthesis against a scripted OpenAI-compatible endpoint: every bad reply reaches its filter, the rest
become examples with provenance; the cache makes a rerun free and byte-identical."""

from __future__ import annotations

import json

import pytest

from jobs.core.store.dataset_folder import DATA_FILES, read_rows
from jobs.synthesize import plan
from jobs.synthesize.run import synthesize
from tests.synthesize.conftest import DOC, synth_spec

pytestmark = pytest.mark.slow  # MiniLM judges similarity


def _samples(st: dict, name: str) -> list[dict]:
    return st["synthesis"]["rejected"][name]["samples"]


def test_each_bad_reply_reaches_its_filter_and_the_rest_become_examples(smoke_spec, curated, endpoint, tmp_path):
    st = synthesize(synth_spec(smoke_spec, endpoint.url), curated, tmp_path / "out", quiet=True)
    rejected = st["synthesis"]["rejected"]
    assert [s["why"] for s in _samples(st, "malformed")] == ["not JSON with a question and an answer"] * 2
    assert "swap-test" not in json.dumps(rejected["off_topic"])
    assert [s["reply"][:29] for s in _samples(st, "off_topic")] == ["What should I cook tonight?\nB"] * 2
    assert {s["why"].split(",")[0] for s in _samples(st, "ungrounded")} == {"states 4096"}
    assert {s["why"].split(" (")[0] for s in _samples(st, "leakage")} == {"near copy of core/qk-01"}
    assert rejected["malformed"]["count"] == rejected["off_topic"]["count"] == rejected["ungrounded"]["count"] == 2
    rows = [r for r in read_rows(tmp_path / "out" / "train.parquet") if r["origin"] != "template"]
    kinds = {(r["template"], r["origin"]) for r in rows}
    assert kinds == {("fact-qa", "synthetic"), ("fact-cloze", "synthetic"), ("paraphrase", "paraphrase")}
    for r in rows:
        assert r["writer"] == "openai:scripted@unpinned" and r["paragraph_ids"][0].startswith("docs/k.md#")
        assert r["source_path"] == "docs/k.md" and len(r["source_sha256"]) == 64
    qa = [r for r in rows if r["template"] == "fact-qa"]
    assert {r["messages"][-1]["content"] for r in qa} >= {DOC.split("\n\n")[5].strip()}  # depolarizing fact
    assert all(r["messages"][0]["role"] == "system" for r in qa)  # the audience's system prompt
    f = st["synthesis"]["facts"]
    assert f["found"] == 5 and f["with_k_kept_questions"] == 1  # only the depolarizing fact keeps 2 questions
    # the swap-test fact: its Q&A are malformed and it has no phrase for a cloze (no number, keyword or acronym)
    assert st["fact_coverage"] == {"facts": 5, "questions_per_fact": 2, "facts_with_k_questions": 1, "facts_with_no_question": 1,
                                   "paragraphs": 5, "paragraphs_with_no_example": 0}
    assert st["synthesis"]["paragraphs_with_no_example"]["count"] == 0  # clozes and paraphrases cover all
    assert st["examples"]["train"] == len(read_rows(tmp_path / "out" / "train.parquet"))
    info = json.loads((tmp_path / "out" / "synthesize-info.json").read_text())
    assert info["calls"]["generated"] == endpoint.requests == st["synthesis"]["requests"]


def test_a_rerun_makes_no_call_and_one_changed_paragraph_regenerates_only_its_own(smoke_spec, curated, endpoint,
                                                                                  tmp_path):
    import dataclasses

    from jobs.curate.run import curate

    spec = synth_spec(smoke_spec, endpoint.url)
    stats = synthesize(spec, curated, tmp_path / "a", quiet=True)
    first = endpoint.requests
    malformed = stats["synthesis"]["rejected"]["malformed"]["count"]  # the swap-test fact's broken JSON, 2 Q&A
    assert malformed == 2
    synthesize(spec, curated, tmp_path / "b", quiet=True)
    # every well-formed reply from the cache; a malformed one is never a cached success: the endpoint is asked again
    assert endpoint.requests == first + malformed
    for name in DATA_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    info = json.loads((tmp_path / "b" / "synthesize-info.json").read_text())
    assert info["calls"] == {"requests": first, "generated": malformed, "cached": first - malformed}

    doc = tmp_path / "docs" / "k.md"  # the curated fixture's source; context 0 keeps neighbours' prompts as they were
    changed = synth_spec(smoke_spec, endpoint.url)
    changed = dataclasses.replace(changed, curate=dataclasses.replace(changed.curate, context_paragraphs=0))
    curate(changed, tmp_path / "c0", [doc.parent], quiet=True)
    synthesize(changed, tmp_path / "c0", tmp_path / "d0", quiet=True)
    before = endpoint.requests
    doc.write_text(DOC.replace("as the circuits get deeper", "as the circuits grow deeper"))
    curate(changed, tmp_path / "c1", [doc.parent], quiet=True)
    synthesize(changed, tmp_path / "c1", tmp_path / "d1", quiet=True)
    p4 = [p for p in read_rows(tmp_path / "c1" / "paragraphs.parquet") if p["id"].endswith("#p4")]
    own = len(plan.first_requests(changed, p4)[0]) + len(plan.second_requests(changed, [(p4[0], 0)])[0])
    # its fact, paraphrase, cloze choice and 2 Q&A; and the malformed replies, asked again
    assert endpoint.requests - before - malformed == own == 5
    old, new = ({r["id"]: r["paragraph_ids"][0] for r in read_rows(tmp_path / d / "train.parquet")
                 if r["origin"] != "template"} for d in ("d0", "d1"))
    moved = {old[i] for i in old.keys() - new.keys()} | {new[i] for i in new.keys() - old.keys()}
    assert [m.rsplit("#", 1)[-1] for m in moved] == ["p4"]  # only that paragraph's examples changed
