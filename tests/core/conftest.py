"""Publish, registry and gc fixtures: a spec over one document, and the three stage folders made by hand."""

import hashlib
import json

import pytest

from jobs.core.spec.load import load_spec

SPEC = """
base_model: {id: tiny-test}
curate: {keywords: [kernel], sources: [%s]}
eval: {suite: %s}
"""
DOC = "# Kernels\nA quantum kernel is an inner product.\n"


@pytest.fixture
def spec(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text(DOC)
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: t\nquestions:\n  - {id: q1, question: What is a kernel, reference: A similarity, concepts: [kernel], topic: k}\n")
    path = tmp_path / "t1.yaml"
    path.write_text(SPEC % (docs, suite))
    return load_spec(path)


def stage_folders(root, passed=True, recall=0.5):
    """The three stage folders, as curate, train and eval leave them; curate read docs/a.md (the spec's source)."""
    d, a, r = root / "dataset", root / "adapter", root / "report"
    for f in (d, a / "checkpoints" / "step-4", r):
        f.mkdir(parents=True)
    (d / "train.parquet").write_bytes(b"PAR1 rows")
    read = [{"path": "docs/a.md", "sha256": hashlib.sha256(DOC.encode()).hexdigest(), "bytes": len(DOC)}]
    (d / "curate-info.json").write_text(json.dumps({"seconds": 1.5, "dataset_sha256": "d" * 64, "sources": read,
                                                    "versions": {"pypdf": "7"}}))
    (a / "adapter_config.json").write_text('{"r": 16}')
    (a / "adapter_model.safetensors").write_bytes(b"weights")
    (a / "checkpoints" / "step-4" / "optimizer.pt").write_bytes(b"big")
    (a / "train-info.json").write_text(json.dumps({"seconds": 10.0, "versions": {"torch": "2"}}))
    (r / "metrics.json").write_text(json.dumps({"headline": {"concept_recall": recall, "similarity": 0.7}}))
    (r / "gate.json").write_text(json.dumps({"passed": passed, "checks": []}))
    (r / "eval-info.json").write_text(json.dumps({"seconds": 3.0, "versions": {}}))
    (r / "report.html").write_text("<html></html>")
    return d, a, r
