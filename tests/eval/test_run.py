"""The eval stage end to end on the tiny model: report folder contract, exit statuses, gate both ways."""

from __future__ import annotations

import json

import pytest

from jobs.eval.__main__ import GATE_FAILED, main

from .conftest import write_spec

pytestmark = pytest.mark.slow


def test_report_folder_contract(first_report):
    names = {p.name for p in first_report.iterdir()}
    assert {"metrics.json", "report.html", "answers.jsonl", "gate.json", "eval-info.json"} <= names
    m = json.loads((first_report / "metrics.json").read_text())
    for k in ("concept_recall", "similarity", "rougeL", "bleu", "perplexity", "stop_rate"):
        assert isinstance(m["headline"][k], float)
        assert isinstance(m["headline"]["base_" + k], float)
        assert m["headline"]["delta_" + k] == pytest.approx(m["headline"][k] - m["headline"]["base_" + k])
    # A flat metric -> float mapping; null only where a metric cannot be computed (no claim to check here).
    assert all(isinstance(v, float) or v is None for v in m["headline"].values())
    for k in ("right_rate", "learned_rate", "abstention_rate", "false_abstention_rate", "train_verbatim_right",
              "train_reworded_right"):
        assert isinstance(m["headline"][k], float), k
    assert [q["id"] for q in m["questions"]] == ["qk-01", "qk-02", "nz-01", "nz-02"]
    assert set(m["topics"]) == {"quantum-kernels", "noise"}
    ci = m["overall"]["adapter"]["similarity"]
    assert ci["low"] <= ci["mean"] <= ci["high"]
    assert m["perplexity"]["paragraphs"] == 2 and m["perplexity"]["tokens"] > 0
    # The random tiny model's answers differ between base and adapter, and the stop flag matches the lengths.
    for q in m["questions"]:
        for side in ("adapter", "base"):
            a = q[side]
            assert a["stopped"] or a["new_tokens"] == 12
    # The smoke spec has no `retrieval:`, so no index: a question's sources are the paragraphs its item names.
    sources = {q["id"]: q["sources"] for q in m["questions"]}
    assert sources["qk-01"] == {"how": "referenced", "missing": [], "paragraphs": [
        {"id": "thesis/kernels.tex#kernels/definition#p0", "source_path": "thesis/kernels.tex", "split": "trained on",
         "train_examples": 1, "rank": None}]}
    assert all(sources[i] == {"how": "none", "paragraphs": [], "missing": []} for i in ("qk-02", "nz-01", "nz-02"))
    assert m["questions"][0]["adapter"]["faithfulness"]["checked"]
    assert not m["questions"][1]["adapter"]["faithfulness"]["checked"]
    lines = (first_report / "answers.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["id"] == "qk-01"
    info = json.loads((first_report / "eval-info.json").read_text())
    assert info["stage"] == "eval" and info["seconds"] > 0 and info["versions"]["torch"]
    assert info["system_prompt"] == "You answer about quantum ML."
    # Which generation path answered, in all three places a reader looks.
    assert m["generation"]["path"] == info["generation"]["path"] == "cpu-exact"
    assert info["generation"]["adapter"]["new_tokens"] == sum(q["adapter"]["new_tokens"] for q in m["questions"])
    assert "<b>cpu-exact</b> generation path" in (first_report / "report.html").read_text()
    assert json.loads((first_report / "gate.json").read_text()) == {"passed": True, "checks": []}


def test_gate_fails_with_exit_3_and_still_writes_the_report(workdir, suite_file, dataset_dir, adapter_dir,
                                                            first_report, capsys):
    folder = workdir / "spec-strict"
    folder.mkdir()
    spec = write_spec(folder, suite_file, min={"similarity": 0.99},
                      max_regression={"concept_recall": 0.0, "perplexity": 0.0})
    out = workdir / "report-2"
    rc = main(["--spec", str(spec), "--dataset", str(dataset_dir), "--adapter", str(adapter_dir),
               "--out", str(out), "--previous", str(first_report)])
    printed = capsys.readouterr().out
    assert rc == GATE_FAILED
    assert "gate FAILED" in printed and "similarity" in printed and "minimum 0.9900" in printed
    gate = json.loads((out / "gate.json").read_text())
    assert gate["passed"] is False
    by_metric = {c["metric"]: c for c in gate["checks"]}
    assert by_metric["similarity"]["passed"] is False
    # Same model, same questions: no regression against the previous report.
    assert by_metric["concept_recall"]["passed"] and by_metric["perplexity"]["passed"]
    assert not by_metric["perplexity"]["skipped"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["previous"]["headline"]["similarity"] == pytest.approx(m["headline"]["similarity"])
    assert (out / "report.html").is_file()


def test_refuses_to_overwrite_a_report(first_report, eval_spec_file, dataset_dir, adapter_dir, capsys):
    before = (first_report / "metrics.json").read_bytes()
    rc = main(["--spec", str(eval_spec_file), "--dataset", str(dataset_dir), "--adapter", str(adapter_dir),
               "--out", str(first_report)])
    assert rc == 2
    assert "not empty" in capsys.readouterr().err
    assert (first_report / "metrics.json").read_bytes() == before


def test_bad_inputs_fail_before_loading_a_model(workdir, eval_spec_file, adapter_dir, capsys):
    rc = main(["--spec", str(eval_spec_file), "--dataset", str(workdir / "nope"), "--adapter", str(adapter_dir),
               "--out", str(workdir / "report-x")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "heldout.parquet" in err and "--dataset" in err
    assert not (workdir / "report-x").exists()
    rc = main(["--spec", str(eval_spec_file), "--dataset", str(workdir / "nope"), "--adapter", str(workdir),
               "--out", str(workdir / "report-x")])
    assert rc == 2 and "not an adapter folder" in capsys.readouterr().err


def test_with_an_index_the_four_arms_and_the_sources_rank_with_it(workdir, suite_file, dataset_dir, adapter_dir,
                                                                  embed):
    import yaml

    from jobs.core.retrieval.hybrid import write_index

    from .conftest import PARAGRAPHS

    folder = workdir / "spec-rag"
    folder.mkdir()
    spec = write_spec(folder, suite_file)
    data = yaml.safe_load(spec.read_text())
    data["retrieval"] = {"embedders": ["minilm"], "k": 2, "default": "on"}
    spec.write_text(yaml.safe_dump(data))
    catalogue = [{"id": pid, "text": text, "kind": "prose", "source_path": src, "section": section, "page": 0,
                  "split": "train", "language": "en"} for text, src, section, pid in PARAGRAPHS]
    write_index(catalogue, workdir / "index", {"minilm": embed})
    out = workdir / "report-rag"
    assert main(["--spec", str(spec), "--dataset", str(dataset_dir), "--adapter", str(adapter_dir), "--out", str(out),
                 "--index", str(workdir / "index")]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["arms"]["overall"]) == {"base", "base+retrieval", "adapter", "adapter+retrieval"}
    sources = {q["id"]: q["sources"] for q in m["questions"]}
    # qk-01 names its paragraph, which the index ranks first for the question and its reference.
    assert sources["qk-01"]["how"] == "referenced"
    assert [(p["id"], p["rank"]) for p in sources["qk-01"]["paragraphs"]] == [
        ("thesis/kernels.tex#kernels/definition#p0", 1)]
    # The others name none: their document's paragraphs, in the index's order (the other document's never).
    assert sources["qk-02"]["how"] == "nearest"
    assert [(p["id"], p["rank"]) for p in sources["qk-02"]["paragraphs"]] == [
        ("thesis/kernels.tex#kernels/concentration#p0", 1), ("thesis/kernels.tex#kernels/definition#p0", 2)]
    assert sources["nz-01"]["how"] == "nearest"
    assert [p["id"] for p in sources["nz-01"]["paragraphs"]] == ["notes/noise.md#noise/channels#p0",
                                                                 "notes/noise.md#noise/damping#p0"]
    assert sources["nz-02"] == {"how": "none", "paragraphs": [], "missing": []}
    assert m["questions"][1]["adapter"]["faithfulness"]["checked"]
    assert "index rank 1" in (out / "report.html").read_text()
