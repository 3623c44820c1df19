"""The spec's synthesize section: validated completely when the spec loads; v3 reuses v2's data."""

from __future__ import annotations

import pytest
import yaml

from jobs.core.repo import REPO_ROOT
from jobs.core.spec.schema import SpecError
from jobs.core.spec.load import load_spec, spec_by_tag


def _spec(tmp_path, synthesize) -> str:
    data = yaml.safe_load((REPO_ROOT / "data/builds/smoke.yaml").read_text())
    data["synthesize"] = synthesize
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_every_problem_of_the_section_is_reported_at_once(tmp_path):
    bad = {"writer": {"kind": "engine", "model": "x", "retries": -1, "timeout_s": 0},
           "audiences": ["boss"], "answer_chars": [30, 10], "top_p": 0.0, "questions_per_fact": 0, "colour": 1}
    with pytest.raises(SpecError) as err:
        load_spec(_spec(tmp_path, bad))
    for expected in ("synthesize.colour: unknown key", "synthesize.writer.model: only for kind openai",
                     "synthesize.writer.retries: must be in [0, 20]", "synthesize.writer.timeout_s: must be in (0.0, 3600.0]",
                     "synthesize.audiences", "'boss'", "synthesize.answer_chars: give [low, high]",
                     "synthesize.top_p", "synthesize.questions_per_fact: must be in [1, 50]"):
        assert expected in str(err.value), expected


def test_absent_means_off_and_empty_means_defaults(tmp_path):
    assert spec_by_tag("v1").synthesize is None
    on = load_spec(_spec(tmp_path, {}))
    assert on.synthesize.writer.kind == "engine" and on.synthesize.questions_per_fact == 3


def test_v3_has_v2s_data_and_other_training():
    v2, v3 = spec_by_tag("v2"), spec_by_tag("v3")
    assert v2.synthesize is not None and (v2.curate, v2.synthesize, v2.base_model) == (v3.curate, v3.synthesize,
                                                                                      v3.base_model)
    assert v3.train.lora.r > v2.train.lora.r and "down_proj" in v3.train.lora.target_modules
    assert v3.train.batch_size * v3.train.grad_accum == 32 and v3.train.lr_scheduler == "cosine"
