"""Eval fixtures: a small suite, a dataset folder and a LoRA adapter for the smoke spec's tiny model, all
made in temporary folders (once per session: the model-backed tests share them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

SUITE = {
    "name": "mini",
    "description": "three questions for tests",
    "questions": [
        {"id": "qk-01", "question": "What is a quantum kernel?",
         "reference": "A quantum kernel is the fidelity between two quantum states prepared by a feature map.",
         "concepts": [{"name": "feature map", "synonyms": ["encoding circuit", "embedding"]}, "fidelity"],
         "topic": "quantum-kernels", "source": "data/raw/thesis/kernels.tex"},
        {"id": "qk-02", "question": "Why do quantum kernels concentrate?",
         "reference": "With many qubits, kernel values concentrate exponentially around a fixed value.",
         "concepts": ["exponential concentration", {"name": "qubit", "synonyms": ["quantum bit"]}],
         "topic": "quantum-kernels", "source": "data/raw/thesis/kernels.tex"},
        {"id": "nz-01", "question": "What does a depolarizing channel do?",
         "reference": "It replaces the state with the maximally mixed state with probability p.",
         "concepts": [{"name": "maximally mixed state", "synonyms": ["identity"]}, "probability"],
         "topic": "noise", "source": "data/raw/notes/noise.md"},
        {"id": "nz-02", "question": "What T1 did the Zurich device have in 2019?",
         "reference": "The documents do not report a device in Zurich.", "expect": "abstain", "topic": "noise"},
    ],
}
# qk-01 names its source paragraph; the others name none, and the smoke spec builds no retrieval index to rank
# their documents' paragraphs, so they have no sources (jobs/eval/sources.py).
SUITE["questions"][0]["paragraphs"] = ["thesis/kernels.tex#kernels/definition#p0"]

PARAGRAPHS = [  # (text, file, section, paragraph id)
    ("A quantum kernel compares two data points through the fidelity of the states a feature map prepares.",
     "thesis/kernels.tex", "Kernels > Definition", "thesis/kernels.tex#kernels/definition#p0"),
    ("Kernel values concentrate exponentially in the number of qubits, which makes training hard.",
     "thesis/kernels.tex", "Kernels > Concentration", "thesis/kernels.tex#kernels/concentration#p0"),
    ("Depolarizing noise mixes the state with the identity with some probability p on every gate.",
     "notes/noise.md", "Noise > Channels", "notes/noise.md#noise/channels#p0"),
    ("Amplitude damping relaxes the excited state to the ground state; its rate is set by the time T1.",
     "notes/noise.md", "Noise > Damping", "notes/noise.md#noise/damping#p0"),
]


def write_spec(tmp: Path, suite_path: Path, **gate) -> Path:
    """The smoke spec with its suite (and gate) replaced, as a spec file of its own."""
    data = yaml.safe_load((REPO / "data" / "builds" / "smoke.yaml").read_text())
    data["eval"]["suite"] = str(suite_path)
    data["eval"]["max_new_tokens"] = 12
    data["eval"]["bootstrap_samples"] = 50
    data["eval"]["gate"] = {"min": gate.get("min", {}), "max_regression": gate.get("max_regression", {})}
    path = tmp / "smoke.yaml"  # the stem is the tag
    path.write_text(yaml.safe_dump(data))
    return path


def write_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (text, src, section, pid) in enumerate(PARAGRAPHS[:2]):
        rows.append({"id": f"ex{i}", "messages": [{"role": "system", "content": "You answer about quantum ML."},
                                                  {"role": "user", "content": f"Explain: {section}"},
                                                  {"role": "assistant", "content": text}],
                     "template": "explain", "source_path": src, "source_sha256": "0" * 64, "section": section,
                     "paragraph_ids": [pid], "keywords": ["kernel"]})
    pd.DataFrame(rows).to_parquet(folder / "train.parquet")
    pd.DataFrame(rows[:1]).to_parquet(folder / "eval.parquet")
    pd.DataFrame([{"id": pid, "text": text, "source_path": src, "section": section}
                  for text, src, section, pid in PARAGRAPHS[2:]]).to_parquet(folder / "heldout.parquet")
    (folder / "stats.json").write_text(json.dumps({"documents": 2, "paragraphs": {"seen": 40, "kept": 3},
                                                   "examples": {"train": 2, "eval": 1}}))
    return folder


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("eval")


@pytest.fixture(scope="session")
def suite_file(workdir) -> Path:
    path = workdir / "mini.yaml"
    path.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def eval_spec_file(workdir, suite_file) -> Path:
    folder = workdir / "spec"
    folder.mkdir()
    return write_spec(folder, suite_file)


@pytest.fixture(scope="session")
def eval_spec(eval_spec_file):
    from jobs.core.spec.load import load_spec

    return load_spec(eval_spec_file)


@pytest.fixture(scope="session")
def dataset_dir(workdir) -> Path:
    return write_dataset(workdir / "dataset")


@pytest.fixture(scope="session")
def adapter_dir(workdir, tiny_adapter) -> Path:
    """The tiny model's random LoRA adapter with a training log, as the train stage's folder has one."""
    out = workdir / "adapter"
    shutil.copytree(tiny_adapter, out)
    log = [{"step": s, "loss": 7.0 - 0.4 * s + 0.1 * (s % 3), "lr": 1e-3, "tokens_per_s": 900.0, "peak_mem_gib": 0.1}
           for s in range(1, 13)]
    (out / "metrics.json").write_text(json.dumps(log))
    return out


@pytest.fixture(scope="session")
def embed():
    from jobs.core.text.embed import load_embedder

    return load_embedder("cpu")


@pytest.fixture(scope="session")
def first_report(workdir, eval_spec_file, dataset_dir, adapter_dir) -> Path:
    """A report folder from the real eval command (no gate checks, no previous build)."""
    from jobs.eval.__main__ import main

    out = workdir / "report-1"
    assert main(["--spec", str(eval_spec_file), "--dataset", str(dataset_dir), "--adapter", str(adapter_dir),
                 "--out", str(out)]) == 0
    return out
