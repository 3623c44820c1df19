"""The previous build is the latest of the same lineage (suite by hash, base model), or the spec's `previous:`;
a suite's paragraph ids must be in the build's documents (the catalogue)."""

import dataclasses
import json

import pytest

from jobs.core.store import lineage
from jobs.core.store.publish import publish
from jobs.core.store.registry import RegistryError, previous_build, promote
from jobs.core.spec.suite import SuiteError, load_suite
from jobs.core.spec.suite_check import check_paragraphs
from tests.core.conftest import stage_folders


def _publish(store, spec, tag, root, suite_sha, base="tiny-test", passed=True):
    d, a, r = stage_folders(root / tag, passed=passed)
    metrics = json.loads((r / "metrics.json").read_text())
    (r / "metrics.json").write_text(json.dumps({**metrics, "suite": {"name": "t", "sha256": suite_sha}}))
    spec = dataclasses.replace(spec, base_model=dataclasses.replace(spec.base_model, id=base))
    publish(spec, tag, d, a, r, store=store)


def test_previous_is_the_latest_build_of_the_same_lineage(store, spec, tmp_path):
    mine = load_suite(spec.eval.suite).sha256
    _publish(store, spec, "same-old", tmp_path, mine)
    _publish(store, spec, "other-suite", tmp_path, "f" * 64)  # newer, but measured on other questions
    _publish(store, spec, "other-base", tmp_path, mine, base="qwen")
    _publish(store, spec, "failed", tmp_path, mine, passed=False)  # a failed build is no baseline
    assert previous_build(store, "new", spec) == "same-old"
    assert previous_build(store, "new") == "other-base"  # without a spec: the newest that passed, as before
    promote(store, "other-suite")  # the promoted build is not of this lineage: not compared with
    assert previous_build(store, "new", spec) == "same-old"
    named = dataclasses.replace(spec, previous="other-suite")
    assert previous_build(store, "new", named) == "other-suite"
    with pytest.raises(RegistryError, match="'gone' is not complete"):
        previous_build(store, "new", dataclasses.replace(spec, previous="gone"))
    diff = lineage.differences(lineage.of_spec(spec), lineage.of_manifest(
        json.loads(store.get_bytes("builds/other-suite/manifest.json"))), "other-suite")
    assert len(diff) == 1 and "different questions" in diff[0]


def test_changed_sources_are_listed():
    before = [{"path": "a.md", "sha256": "1"}, {"path": "b.md", "sha256": "2"}]
    after = [{"path": "a.md", "sha256": "9"}, {"path": "c.md", "sha256": "3"}]
    diff = lineage.changed_sources(before, after)
    assert diff == {"added": ["c.md"], "removed": ["b.md"], "changed": ["a.md"]}
    assert lineage.sources_line(diff) == "documents since then: 1 added (c.md); 1 removed (b.md); 1 changed (a.md)"
    assert lineage.sources_line(lineage.changed_sources(before, before)) == ""


def test_a_suite_about_other_documents_is_refused_naming_the_ids(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nquestions:\n"
                     "  - {id: q1, question: what, reference: b, concepts: [c], topic: t, paragraphs: ['d.md#x#p0']}\n"
                     "  - {id: q2, question: what, reference: b, concepts: [c], topic: t, paragraphs: ['d.md#x#p1']}\n"
                     "  - {id: q3, question: what, reference: b, concepts: [c], topic: t, "
                     "paragraphs: ['other.md#y#p0']}\n")
    catalogue = [{"id": "d.md#x#p0", "selected": True, "source_path": "d.md"},
                 {"id": "d.md#x#p1", "selected": False, "source_path": "d.md"}]
    with pytest.raises(SuiteError) as err:
        check_paragraphs(load_suite(suite), catalogue)
    msg = str(err.value)
    assert "1 paragraph id(s)" in msg and "other.md#y#p0 (asked by q3)" in msg
    assert "Apart from those, 1 exist but were not selected for training: d.md#x#p1 (asked by q2)" in msg
    notes = check_paragraphs(load_suite(suite), catalogue + [{"id": "other.md#y#p0", "selected": True,
                                                              "source_path": "other.md"}])
    assert len(notes) == 1 and "d.md#x#p1 (asked by q2)" in notes[0] and "curate.overrides" in notes[0]
