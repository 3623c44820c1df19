"""`python -m jobs.eval.compare` reads two builds' reports from the store and prints the comparison, down to the
questions one build lost or gained against the other."""

from __future__ import annotations

import hashlib
import json

import pytest

from jobs.core.store import keys
from jobs.core.store.registry import promote
from jobs.core.store.backends import open_store
from jobs.eval.compare import main


def _question(qid: str, answer: str, recall: float, similarity: float) -> dict:
    side = {"answer": answer, "concept_recall": recall, "similarity": similarity}
    return {"id": qid, "topic": "kernels", "expect": "answer", "question": f"What about {qid}?", "adapter": side,
            "base": side}


def _put_build(store, tag: str, created_at: str, headline: dict, topics: dict, status: str = "passed",
               questions: list | None = None, suite: str = "a" * 64, spec: dict | None = None) -> None:
    """A committed build as publish leaves it: files under an attempt, listed with their sha256 by the manifest."""
    metrics = {"tag": tag, "suite": {"name": "core", "sha256": suite, "questions": 3}, "headline": headline,
               "topics": topics, "gate": {"passed": status == "passed", "checks": []}, "questions": questions or []}
    files = {"dataset": ("train.parquet", b"rows"), "adapter": ("adapter_model.safetensors", b"weights"),
             "report": ("metrics.json", json.dumps(metrics).encode())}
    attempt = keys.new_attempt()
    for artifact, (name, data) in files.items():
        store.put_bytes(keys.artifact_prefix(tag, artifact, attempt) + name, data)
    listed = {artifact: [{"path": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}]
              for artifact, (name, data) in files.items()}
    store.put_bytes(keys.manifest_key(tag), json.dumps({
        "tag": tag, "status": status, "created_at": created_at, "attempt": attempt, "artifacts": listed,
        "suite": metrics["suite"], "base_model": "tiny", "spec": spec or {"train": {"learning_rate": 0.001}}}).encode())


def _topic(recall: float, similarity: float) -> dict:
    return {"questions": 2, "adapter": {"concept_recall": {"mean": recall}, "similarity": {"mean": similarity}}}


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("QSLM_STORE", str(tmp_path / "store"))
    s = open_store()
    _put_build(s, "v1", "2026-01-01T00:00:00+00:00",
               {"concept_recall": 0.40, "similarity": 0.60, "perplexity": 12.0, "base_concept_recall": 0.2},
               {"kernels": _topic(0.4, 0.6)},
               questions=[_question("qk-01", "The overlap of two embedded states.", 1.0, 0.8),
                          _question("qk-02", "A Gaussian kernel.", 0.0, 0.3),
                          _question("qk-03", "Shot noise limits small values.", 1.0, 0.7)])
    _put_build(s, "v2", "2026-01-02T00:00:00+00:00",
               {"concept_recall": 0.55, "similarity": 0.58, "perplexity": 9.0, "base_concept_recall": 0.2,
                "right_rate": 0.5, "learned_rate": 0.25},
               {"kernels": _topic(0.5, 0.6), "noise": _topic(0.7, 0.5)},
               questions=[_question("qk-01", "It is a classical kernel.", 0.0, 0.4),
                          _question("qk-02", "The squared overlap of the feature-map states.", 1.0, 0.9),
                          _question("qk-03", "Shot noise limits small values.", 1.0, 0.7),
                          _question("qk-04", "New question.", 1.0, 0.7)])
    return s


def test_compare_two_tags(store, capsys):
    assert main(["--a", "v1", "--b", "v2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("compare v1 (A) -> v2 (B)") and "spec differences v1 -> v2: none" in out
    recall = next(line for line in out.splitlines() if line.startswith("concept recall"))
    assert recall.split()[2:7] == ["0.400", "0.550", "+0.150", "better", "+0.350"]
    ppl = next(line for line in out.splitlines() if line.startswith("perplexity"))
    assert "-3.000" in ppl and "better" in ppl
    noise = next(line for line in out.splitlines() if line.startswith("noise"))
    assert noise.split()[1:3] == ["–", "0.700"]  # a topic only B has


def test_defaults_are_the_newest_and_its_previous_build_of_the_same_lineage(store, capsys):
    assert main([]) == 0  # B: the newest; A: the build before it of the same suite and base model
    assert capsys.readouterr().out.startswith("compare v1 (A) -> v2 (B)")
    assert main(["v2", "v1"]) == 0  # positional A B
    assert capsys.readouterr().out.startswith("compare v2 (A) -> v1 (B)")
    assert main(["v1"]) == 2  # one tag: against its previous build, and v1 has none
    assert "v1 has no previous build of its lineage" in capsys.readouterr().err
    assert main(["--a", "v2", "--b", "v2"]) == 2
    assert "compared with itself" in capsys.readouterr().err
    _put_build(store, "v3", "2026-01-03T00:00:00+00:00", {"concept_recall": 0.9}, {}, suite="b" * 64,
               spec={"train": {"learning_rate": 0.0002}})
    promote(store, "v1")
    assert main(["v3"]) == 2  # the promoted v1 and v2 were measured on another suite: no previous build
    assert main(["--a", "v2", "--b", "v3"]) == 0  # named: compared, and said
    out = capsys.readouterr().out
    assert "NOT LIKE FOR LIKE: v2 was measured on suite core (aaaaaaaaaaaa)" in out
    assert "train.learning_rate: 0.001 -> 0.0002" in out


def test_unknown_tag_names_the_builds_that_exist(store, capsys):
    assert main(["--a", "v1", "--b", "v9"]) == 2
    err = capsys.readouterr().err
    assert "v9" in err and "complete builds: v1, v2" in err


def test_the_question_level_diff_shows_lost_and_gained_with_both_answers(store, capsys):
    assert main(["--a", "v1", "--b", "v2"]) == 0
    out = capsys.readouterr().out
    assert "questions: 1 lost, 1 gained, 1 right in both, 0 wrong in both" in out
    lost = out[out.index("lost: qk-01"):]
    assert lost.splitlines()[1].strip().startswith("v1 (recall 1.000, similarity 0.800): The overlap of two")
    assert lost.splitlines()[2].strip().startswith("v2 (recall 0.000, similarity 0.400): It is a classical")
    assert "gained: qk-02 [kernels] What about qk-02?" in out and "only in B: qk-04" in out
    right = next(line for line in out.splitlines() if line.startswith("answered right"))
    assert right.split()[2:4] == ["–", "50%"]  # a diagnostic the older build did not have


def test_a_damaged_report_is_refused(store, capsys):
    attempt = json.loads(store.get_bytes(keys.manifest_key("v1")))["attempt"]
    store.put_bytes(keys.artifact_prefix("v1", "report", attempt) + "metrics.json", b"{}")
    assert main(["--a", "v1", "--b", "v2"]) == 2
    assert "does not match its manifest" in capsys.readouterr().err


def test_an_arm_is_compared_by_its_prefixed_headline():
    import pytest

    from jobs.eval.compare import CompareError, arm_view

    metrics = {"headline": {"concept_recall": 0.1, "rag_concept_recall": 0.6, "base_rag_concept_recall": 0.4}}
    assert arm_view(metrics, "adapter+retrieval", "v4")["headline"]["concept_recall"] == 0.6
    assert arm_view(metrics, "base+retrieval", "v4")["headline"]["concept_recall"] == 0.4
    assert arm_view(metrics, "adapter", "v4") is metrics
    with pytest.raises(CompareError, match="no adapter\\+retrieval arm"):
        arm_view({"headline": {"concept_recall": 0.1}}, "adapter+retrieval", "v2")
