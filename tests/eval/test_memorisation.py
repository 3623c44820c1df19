"""Proof that the whole path can see learning: the tiny model, trained long enough on four examples to recite
them, answers its own training questions right far more often than the base does, while its held-out scores
stay near zero (it memorised; it did not learn the suite's facts). Train and eval run as their commands."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from jobs.eval.__main__ import main as eval_main
from jobs.train.__main__ import main as train_main

from .conftest import REPO, PARAGRAPHS

pytestmark = pytest.mark.slow

# Facts from the error-mitigation notes; the held-out suite (conftest's) asks about kernels and depolarizing noise.
FACTS = [("What is zero-noise extrapolation?", "It measures at amplified noise and extrapolates back to zero noise."),
         ("Define unitary folding.", "Unitary folding replaces a gate by the gate, its inverse and the gate again."),
         ("What does readout mitigation do?", "It inverts the calibrated confusion matrix and corrects the counts."),
         ("Why is error cancellation costly?", "Its sampling overhead grows exponentially with the noisy gates.")]


def _memorising_spec(folder, suite_file):
    """The smoke spec with a training run that memorises: every module adapted, no dropout, 150 full-batch
    steps at a constant 1e-2 (measured: the four answers are recited greedily from about step 110)."""
    data = yaml.safe_load((REPO / "data" / "builds" / "smoke.yaml").read_text())
    data["train"].update(max_steps=150, learning_rate=1.0e-2, batch_size=4, grad_accum=1, lr_scheduler="constant",
                         checkpoint_every=1000, logging_every=10)
    data["train"]["lora"].update(dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"])
    data["eval"].update(suite=str(suite_file), max_new_tokens=24, bootstrap_samples=50, train_questions=4)
    path = folder / "memorise.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _dataset(folder):
    folder.mkdir()
    rows = [{"id": f"fact{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
             "template": "define", "source_path": "notes/error-mitigation.md", "source_sha256": "0" * 64,
             "section": "Mitigation", "paragraph_ids": [f"notes/error-mitigation.md#mitigation#p{i}"],
             "keywords": ["error mitigation"]} for i, (q, a) in enumerate(FACTS)]
    pd.DataFrame(rows).to_parquet(folder / "train.parquet")
    pd.DataFrame(rows[:1]).to_parquet(folder / "eval.parquet")
    pd.DataFrame([{"id": pid, "text": text, "source_path": src, "section": section}
                  for text, src, section, pid in PARAGRAPHS]).to_parquet(folder / "heldout.parquet")
    (folder / "stats.json").write_text(json.dumps({"examples": {"train": 4}}))
    return folder


def test_memorised_training_answers_are_recalled_and_held_out_scores_stay_near_zero(tmp_path, suite_file):
    spec = _memorising_spec(tmp_path, suite_file)
    dataset = _dataset(tmp_path / "dataset")
    assert train_main(["--spec", str(spec), "--dataset", str(dataset), "--out", str(tmp_path / "adapter")]) == 0
    report = tmp_path / "report"
    assert eval_main(["--spec", str(spec), "--dataset", str(dataset), "--adapter", str(tmp_path / "adapter"),
                      "--out", str(report)]) == 0
    m = json.loads((report / "metrics.json").read_text())
    probes = m["diagnostics"]["probes"]
    assert probes["summary"]["probes"] == 4
    # Training questions, asked exactly as trained: recited by the adapter, not by the random base.
    assert m["headline"]["train_verbatim_right"] >= 0.75
    assert m["headline"]["base_train_verbatim_right"] == 0.0
    trained = dict(FACTS)
    recited = [p for p in probes["rows"] if p["verbatim"]["adapter"]["answer"] == trained[p["question"]]]
    assert len(recited) >= 3, [p["verbatim"]["adapter"]["answer"] for p in probes["rows"]]
    # Held out: the suite's facts were never trained, so nothing is right and little overlaps.
    assert m["headline"]["right_rate"] == 0.0 and m["headline"]["concept_recall"] <= 0.2
    assert m["diagnostics"]["outcomes"]["overall"]["learned"] == []
    assert probes["summary"]["verdict"].startswith("Memorised without transfer")
    html = (report / "report.html").read_text()
    assert "Memorised without transfer" in html
    # A recited training answer given to a held-out question is a claim its sources do not support: marked.
    assert m["headline"]["unsupported_rate"] > 0.5
    assert '<mark class="unsupported"' in html
