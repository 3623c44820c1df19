"""`make new`: a folder of someone's own documents (not about quantum computing) to a spec and a draft suite."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from jobs.core.text.leakage import LeakageCheck
from jobs.core.repo import REPO_ROOT
from jobs.core.spec.load import load_spec
from jobs.core.spec.suite import load_suite
from jobs.core.spec.suite_check import check_paragraphs
from jobs.new import run
from jobs.new.run import NewError, new


def test_new_writes_a_spec_and_a_draft_suite_from_the_documents(notes, data, capsys):
    summary = new("bees", notes, like="smoke", questions=10, data=data)
    out = capsys.readouterr().out
    copied = data / "raw" / "bees"
    assert sorted(p.name for p in copied.iterdir()) == ["apiary.md", "equipment.docx", "wintering.html"]
    assert "drafting: offline extractive drafts" in out and "next: make review VERSION=bees" in out

    spec = load_spec(data / "builds" / "bees.yaml")  # loads as make build loads it
    assert spec.curate.sources == (str(copied),) and spec.eval.suite == str(data / "eval" / "bees.yaml")
    assert spec.base_model.id == "tiny-qwen2" and spec.train.max_steps == 12  # the settings of LIKE=smoke
    text = (data / "builds" / "bees.yaml").read_text()
    assert "# the model fine-tuned" in text and "# QLoRA" in text and "proposed from the documents" in text
    words = " ".join(spec.curate.keywords)
    assert "varroa" in words and "colony" in words and "quantum" not in words

    suite = load_suite(spec.eval.suite)
    answerable = [q for q in suite.questions if q.expect == "answer"]
    assert len(answerable) == summary["questions"] > 0 and {q.status for q in suite.questions} == {"draft"}
    assert 1 <= len([q for q in suite.questions if q.expect == "abstain"]) <= 3
    assert {q.topic for q in answerable} >= {"apiary-notes", "wintering-the-colonies", "equipment"}  # every document
    assert summary["sections"][0] == summary["sections"][1]  # every section with a usable paragraph is asked about
    assert all(q.concepts and q.paragraphs and q.source.startswith(str(copied.relative_to(copied.parent.parent)))
               or q.source for q in answerable)
    # every paragraph id is one the build will have, and none is a verbatim copy the leakage check would act on
    catalogue = run.catalogue(copied)
    assert check_paragraphs(suite, [dict(r, selected=True) for r in catalogue]) == []
    check = LeakageCheck([suite], spec.curate.near_duplicate_threshold)
    assert not [r["id"] for r in catalogue if check.find(r["text"])]
    texts = {r["id"]: r["text"] for r in catalogue}
    assert not any(q.reference in texts[q.paragraphs[0]] for q in answerable)
    assert any(c.synonyms for q in answerable for c in q.concepts)
    # documents already under data/raw/ are read where they are, not copied again
    new("again", copied, like="smoke", questions=2, data=data)
    assert load_spec(data / "builds" / "again.yaml").curate.sources == (str(copied),)
    assert not (data / "raw" / "again").exists()


def test_new_refuses_what_it_would_overwrite_and_bad_input(notes, data, tmp_path):
    new("bees", notes, like="smoke", questions=4, data=data)
    with pytest.raises(NewError, match="bees.yaml exists; make new never overwrites"):
        new("bees", notes, like="smoke", data=data)
    with pytest.raises(NewError, match="not a valid build tag"):
        new("../x", notes, like="smoke", data=data)
    with pytest.raises(NewError, match="not a folder"):
        new("other", tmp_path / "absent", like="smoke", data=data)
    with pytest.raises(NewError, match="not a build tag"):
        new("other", notes, like="../../etc/passwd", data=data)
    (data / "raw" / "clash").mkdir()
    (data / "raw" / "clash" / "x.md").write_text("# other\n\nsomething else entirely, long enough to be a paragraph.")
    with pytest.raises(NewError, match="exists and holds other files"):
        new("clash", notes, like="smoke", data=data)


def test_link_reads_the_folder_where_it_is_and_records_the_allowance(notes, data, tmp_path, monkeypatch):
    roots = tmp_path / "local-roots"
    monkeypatch.setattr(run, "LOCAL_ROOTS_FILE", roots)
    monkeypatch.setattr("jobs.core.spec.parse.LOCAL_ROOTS_FILE", roots)
    monkeypatch.setenv("QSLM_DATA_ROOT", str(data))  # the documents' folder is not under it
    new("linked", notes, link=True, like="smoke", questions=4, data=data)
    assert not (data / "raw" / "linked").exists()
    assert str(notes) in roots.read_text().splitlines()
    spec = load_spec(data / "builds" / "linked.yaml")  # allowed through the local roots file alone
    assert spec.curate.sources == (str(notes),)
    suite = load_suite(spec.eval.suite)
    assert all(p.startswith("beekeeping/") for q in suite.questions for p in q.paragraphs)


def test_make_new_passes_values_through_the_environment(tmp_path):
    """A value with shell syntax reaches the command as data and is refused there, never run."""
    marker = tmp_path / "pwned"
    proc = subprocess.run(["make", "-s", "new", f"VERSION=x; touch {marker}", f"SOURCES={tmp_path}"],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and not marker.exists()
    assert "is not a build tag" in proc.stderr  # make refuses it before anything runs


def test_cli_help():
    proc = subprocess.run([sys.executable, "-m", "jobs.new", "--help"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0 and "--writer" in proc.stdout and re.search(r"--link", proc.stdout)


def test_a_users_own_question_answer_pairs_become_the_suite(notes, data, tmp_path):
    pairs = tmp_path / "mine.jsonl"
    pairs.write_text(json.dumps({"question": "When is oxalic acid given?", "answer": "In the broodless period of "
                                 "midwinter, when no varroa mites hide under capped brood."}) + "\n"
                     + json.dumps({"question": "Is it sunny?", "answer": "Often."}) + "\n")
    new("pairs", notes, like="smoke", data=data, qa=pairs)
    suite = load_suite(data / "eval" / "pairs.yaml")
    q = next(q for q in suite.questions if q.id == "qa-001")
    assert q.question == "When is oxalic acid given?" and q.status == "draft" and q.topic == "varroa-mites"
    assert q.paragraphs and q.paragraphs[0].endswith("#apiary-notes/varroa-mites#p2") and q.concepts
    assert "qa-002" not in {x.id for x in suite.questions}  # no term of the documents in it: skipped, said
    with pytest.raises(NewError, match="no such file"):
        new("pairs2", notes, like="smoke", data=data, qa=tmp_path / "absent.jsonl")
