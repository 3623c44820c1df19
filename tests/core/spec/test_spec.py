from pathlib import Path

import pytest

from jobs.core.repo import BUILDS_DIR
from jobs.core.spec.schema import BuildSpec, SpecError
from jobs.core.spec.load import available_tags, load_spec, spec_by_tag


@pytest.mark.parametrize("tag", available_tags())
def test_every_shipped_spec_loads(tag):
    spec = spec_by_tag(tag)
    assert isinstance(spec, BuildSpec) and spec.name == tag
    assert all(Path(s).exists() for s in spec.curate.sources)


def test_v1_is_the_original_proof_of_concept():
    spec = spec_by_tag("v1")
    assert spec.base_model.id == "Qwen/Qwen2.5-1.5B-Instruct" and spec.base_model.tiny is None
    t = spec.train
    assert (t.quantization, t.compute_dtype, t.batch_size, t.grad_accum) == ("nf4", "float16", 1, 4)
    assert (t.lora.r, t.lora.alpha) == (16, 32)
    assert set(t.lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_smoke_runs_the_same_training_configuration_on_a_tiny_model():
    smoke, v1 = spec_by_tag("smoke"), spec_by_tag("v1")
    assert smoke.base_model.tiny is not None
    assert smoke.train.lora == v1.train.lora and smoke.train.quantization == v1.train.quantization


def test_a_spec_without_a_suite_or_naming_itself_previous_is_refused(tmp_path):
    """No default suite: the questions of another corpus would score this build and print meaningless numbers."""
    bad = tmp_path / "mine.yaml"
    bad.write_text("base_model: {id: tiny}\ncurate: {keywords: [kernel]}\nprevious: mine\n")
    msg = str(pytest.raises(SpecError, load_spec, bad).value)
    assert "eval.suite: missing" in msg and "make new VERSION=<tag>" in msg
    assert "previous: 'mine' must be the tag of another build" in msg
    bad.write_text("base_model: {id: tiny}\ncurate: {keywords: [kernel]}\neval: {suite: data/eval/core.yaml}\n"
                   "previous: v1\n")
    assert load_spec(bad).previous == "v1"


def test_spec_is_frozen():
    spec = spec_by_tag("smoke")
    with pytest.raises(Exception):
        spec.name = "other"  # type: ignore[misc]


def test_three_mistakes_are_reported_together_naming_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "base_model: {id: tiny}\n"
        "curate:\n  keywords: [kernel]\n  sources: [data/no-such-folder]\n  colour: blue\n"
        "train:\n  batch_size: two\neval: {suite: data/eval/core.yaml}\n")
    with pytest.raises(SpecError) as err:
        load_spec(bad)
    msg = str(err.value)
    assert str(bad) in msg and "3 problem(s)" in msg
    assert "curate.colour: unknown key" in msg
    assert "train.batch_size: expected an integer" in msg
    assert "data/no-such-folder" in msg and "does not exist" in msg


def test_bad_enum_and_missing_required_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_model: {id: x}\ntrain: {quantization: int3}\n")
    msg = str(pytest.raises(SpecError, load_spec, bad).value)
    assert "train.quantization: 'int3' is not one of 'nf4', 'none'" in msg
    assert "curate: required key is missing" in msg


def test_resolved_spec_round_trips_through_json(tmp_path):
    spec = spec_by_tag("smoke")
    path = tmp_path / "resolved.json"
    path.write_text(spec.to_json())
    again = load_spec(path)
    assert again.name == "smoke" and again.source_file == str(path)
    assert {**again.to_dict(), "source_file": ""} == {**spec.to_dict(), "source_file": ""}


@pytest.mark.parametrize("tag", ["../x", "a/b", "", "-x"])
def test_path_like_tags_are_refused_naming_the_specs_that_exist(tag):
    msg = str(pytest.raises(SpecError, spec_by_tag, tag).value)
    assert "not a valid build tag" in msg and "smoke" in msg and "v1" in msg


def test_unknown_tag_names_the_specs_that_exist():
    msg = str(pytest.raises(SpecError, spec_by_tag, "v99").value)
    assert "no build spec for tag 'v99'" in msg and str(BUILDS_DIR / "v99.yaml") in msg and "smoke" in msg


def test_one_mistake_per_section_is_caught_at_load_all_at_once(tmp_path):
    """Each of these used to surface only in the stage that reads it: curate, train, or eval after training."""
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("pin: 3\nkeep: []\n")
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\nquestions:\n  - id: q1\n    question: What is it?\n    reference: This.\n    topic: t\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "base_model: {id: x, tiny: {hidden_size: 65, num_heads: 4}}\n"
        f"curate: {{keywords: [kernel], templates: [explain, explian], overrides: {overrides}}}\n"
        "train: {execution: {micro_batch_size: 0, loss_chunk_tokens: -1}}\n"
        f"eval: {{suite: {suite}, gate: {{min: {{concept_recal: 0.3, perplexity: 3.0}}, "
        "max_regression: {bleu: -1.0}}}\n")
    msg = str(pytest.raises(SpecError, load_spec, bad).value)
    assert str(bad) in msg and "9 problem(s)" in msg
    assert "base_model.tiny: hidden_size 65 must divide by num_heads 4" in msg
    assert "curate.templates: unknown template(s) 'explian'" in msg
    assert f"curate.overrides: {overrides}: 2 problem(s)" in msg and "pin: expected a list" in msg
    assert "keep: unknown key" in msg
    assert "train.execution.micro_batch_size: must be in [1, 1,024], got 0" in msg
    assert "train.execution.loss_chunk_tokens: must be in [0, 1,048,576], got -1" in msg
    assert f"eval.suite: {suite}: 1 problem(s)" in msg and "missing key(s) concepts" in msg
    assert "eval.gate.min.concept_recal: unknown metric" in msg
    assert "eval.gate.min.perplexity: perplexity is lower-is-better" in msg
    assert "eval.gate.max_regression.bleu: must be in [0.0, 1000000.0], got -1.0" in msg


def test_the_spec_command_validates_tags_and_files(capsys, tmp_path):
    from jobs.core.spec.__main__ import main

    assert main(["smoke", str(BUILDS_DIR / "v1.yaml")]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_model: {id: x}\ncurate: {keywords: []}\n")
    assert main(["smoke", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spec: error: {bad}") and "curate.keywords: give at least one keyword" in err


@pytest.mark.parametrize("tag", ["smoke\n", "v1\n", "smoke\r", " smoke"])
def test_a_tag_with_a_trailing_newline_is_not_a_tag(tag):
    """`re.match` with `$` matched "v1\\n": a second "v1" beside the immutable one."""
    from jobs.core.spec.tags import TAG_PATTERN

    assert TAG_PATTERN.match(tag) is None
    assert "not a valid build tag" in str(pytest.raises(SpecError, spec_by_tag, tag).value)


SPEC_WITH = "base_model: {id: x}\ncurate: {keywords: [k], sources: [%s]}\neval: {suite: data/eval/core.yaml}\n"


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """A folder outside the repository that is not a data root (the tests' own temp root is one)."""
    monkeypatch.delenv("QSLM_DATA_ROOT")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\nText.\n")
    (tmp_path / "root-link").symlink_to("/")
    return tmp_path


@pytest.mark.parametrize("path", ["../../../../../../../etc", "/", "/etc/passwd", "{tmp}/docs", "{tmp}/root-link",
                                  "data/raw/../../../../../../tmp"])
def test_spec_paths_that_leave_the_repository_are_refused(outside, path):
    spec = outside / "s.yaml"
    spec.write_text(SPEC_WITH % path.format(tmp=outside))
    msg = str(pytest.raises(SpecError, load_spec, spec).value)
    assert "curate.sources[0]: " in msg and "is outside the repository" in msg and "QSLM_DATA_ROOT" in msg


def test_a_data_root_allows_a_folder_outside_the_repository(outside, monkeypatch):
    spec = outside / "s.yaml"
    spec.write_text(SPEC_WITH % (outside / "docs"))
    monkeypatch.setenv("QSLM_DATA_ROOT", str(outside / "docs"))
    assert load_spec(spec).curate.sources == (str(outside / "docs"),)
    spec.write_text(SPEC_WITH % (outside / "root-link"))  # the link leads to /, outside the data root
    assert "is outside the repository" in str(pytest.raises(SpecError, load_spec, spec).value)


def test_a_suite_or_overrides_outside_is_refused_unread(outside):
    """The file is not even opened: a FIFO there would block a reader forever."""
    import os

    os.mkfifo(outside / "fifo.yaml")
    spec = outside / "s.yaml"
    spec.write_text(f"base_model: {{id: x}}\ncurate: {{keywords: [k], overrides: {outside / 'fifo.yaml'}}}\n"
                    f"eval: {{suite: {outside / 'fifo.yaml'}}}\n")
    msg = str(pytest.raises(SpecError, load_spec, spec).value)
    assert "curate.overrides: " in msg and "eval.suite: " in msg and msg.count("is outside the repository") == 2


def test_the_gate_can_name_the_knowledge_diagnostics(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("base_model: {id: x}\ncurate: {keywords: [kernel]}\n"
                    "eval: {suite: data/eval/core.yaml, train_questions: 0, gate: {min: {abstention_rate: 0.6, learned_rate: 0.3}, "
                    "max_regression: {unsupported_rate: 0.05, forgotten_rate: 0.1}}}\n")
    spec = load_spec(good)
    assert spec.eval.gate.min == {"abstention_rate": 0.6, "learned_rate": 0.3} and spec.eval.train_questions == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_model: {id: x}\ncurate: {keywords: [kernel]}\n"
                   "eval: {train_questions: -1, gate: {min: {unsupported_rate: 0.1}}}\n")
    msg = str(pytest.raises(SpecError, load_spec, bad).value)
    assert "eval.train_questions: must be in [0, 10,000], got -1" in msg
    assert "eval.gate.min.unsupported_rate: unsupported_rate is lower-is-better" in msg


def test_a_padded_tiny_model_needs_rows_for_every_word_and_a_dtype_it_can_save(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\nquestions:\n  - {id: q1, question: What is it, reference: This., concepts: [r], topic: t}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_model: {id: x, tiny: {vocab_size: 1024, embedding_rows: 512, dtype: bfloat16}}\n"
                   f"curate: {{keywords: [kernel]}}\neval: {{suite: {suite}}}\n")
    msg = str(pytest.raises(SpecError, load_spec, bad).value)
    assert "2 problem(s)" in msg
    assert "base_model.tiny.dtype: 'bfloat16' is not one of 'float32', 'float16'" in msg
    assert "base_model.tiny.embedding_rows: 512 is fewer than vocab_size 1024" in msg


def test_retrieval_raft_and_the_gate_naming_an_arm(tmp_path):
    from jobs.core.spec.metrics import arm_metric

    good = tmp_path / "good.yaml"
    good.write_text("base_model: {id: x}\ncurate: {keywords: [kernel]}\n"
                    "retrieval: {embedders: [minilm, e5], k: 3}\n"
                    "synthesize: {raft: {distractors: 2, without_oracle: 0.25}}\n"
                    "eval: {suite: data/eval/core.yaml, gate: {min: {rag_concept_recall: 0.3, base_rag_similarity: 0.1}, "
                    "max_regression: {rag_repetition_rate: 0.1}}}\n")
    spec = load_spec(good)
    assert spec.retrieval.k == 3 and spec.synthesize.raft.without_oracle == 0.25 and spec.retrieval.default == "on"
    assert arm_metric("rag_concept_recall") == ("adapter+retrieval", "concept_recall")
    assert arm_metric("base_rag_bleu") == ("base+retrieval", "bleu") and arm_metric("bleu") == ("adapter", "bleu")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_model: {id: x}\ncurate: {keywords: [kernel]}\n"
                   "synthesize: {raft: {distractors: 0, without_oracle: 1.5}}\n"
                   "eval: {gate: {min: {rag_concept_recall: 0.3, rag_perplexity: 9}}}\n")
    msg = str(pytest.raises(SpecError, load_spec, bad).value)
    assert "synthesize.raft.distractors: must be in [1, 50], got 0" in msg
    assert "synthesize.raft.without_oracle: must be in [0.0, 1.0), got 1.5" in msg
    assert "synthesize.raft: RAFT's distractors come from the build's retriever" in msg
    assert "eval.gate.min.rag_concept_recall: gates the adapter+retrieval arm, which needs a `retrieval:`" in msg
    assert "eval.gate.min.rag_perplexity: perplexity is lower-is-better" in msg
    worse = tmp_path / "worse.yaml"
    worse.write_text("base_model: {id: x}\ncurate: {keywords: [kernel]}\nretrieval: {embedders: [bert], k: 0}\n")
    msg = str(pytest.raises(SpecError, load_spec, worse).value)
    assert "retrieval.embedders: give one or more of minilm, e5, each once (unknown: 'bert')" in msg
    assert "retrieval.k: must be in [1, 64], got 0" in msg
