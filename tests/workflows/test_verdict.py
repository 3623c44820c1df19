"""The build's last step: the headline for the UI, and the gate's verdict as its exit status."""

from __future__ import annotations

import json

from jobs.core.spec.metrics import GATE_FAILED, HEADLINE
from workflows import verdict


def report(tmp_path, passed: bool):
    folder = tmp_path / "report"
    folder.mkdir()
    headline = {m: 0.5 for m in HEADLINE}
    topics = {f"topic-{i}": {"questions": list(range(50))} for i in range(40)}  # the bulk a real report carries
    (folder / "metrics.json").write_text(json.dumps({"headline": headline, "topics": topics}))
    checks = [{"metric": "concept_recall", "passed": True, "message": "concept_recall 0.5000 >= minimum 0.3000"},
              {"metric": "similarity", "passed": passed, "message": "similarity 0.5000 < minimum 0.6000"}]
    (folder / "gate.json").write_text(json.dumps({"passed": passed, "checks": checks}))
    return folder, headline


def test_passed_gate_exits_0_and_keeps_only_the_headline(tmp_path, capsys):
    folder, headline = report(tmp_path, passed=True)
    assert verdict.main(["--report", str(folder), "--out", str(tmp_path / "out")]) == 0
    written = (tmp_path / "out" / "headline.json").read_text()
    assert json.loads(written) == headline
    assert len(written) * 10 < len((folder / "metrics.json").read_text())  # what goes into the workflow status
    assert (tmp_path / "out" / "gate.txt").read_text() == "passed\n"
    assert "gate passed" in capsys.readouterr().out


def test_failed_gate_exits_3_and_names_the_failed_checks(tmp_path, capsys):
    folder, _ = report(tmp_path, passed=False)
    assert verdict.main(["--report", str(folder), "--out", str(tmp_path / "out")]) == GATE_FAILED
    assert (tmp_path / "out" / "gate.txt").read_text() == "failed: similarity 0.5000 < minimum 0.6000\n"
    out = capsys.readouterr().out
    assert "FAIL similarity" in out and "failed-gate" in out


def test_a_report_without_its_files_is_an_error_not_a_verdict(tmp_path, capsys):
    (tmp_path / "report").mkdir()
    assert verdict.main(["--report", str(tmp_path / "report"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("verdict: error: ") and "metrics.json" in err
