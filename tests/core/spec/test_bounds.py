"""Every number in a build spec is finite and bounded on both sides, the range named in the message."""

import dataclasses
import typing

import pytest
import yaml

from jobs.core.repo import BUILDS_DIR
from jobs.core.spec.schema import BuildSpec, SpecError
from jobs.core.spec.load import load_spec
from jobs.core.spec.bounds import SPEC_BOUNDS, Range


def _numeric_paths(cls, where=""):
    """Every dotted path of a number the spec dataclasses declare (a mapping's keys as `*`)."""
    for f in dataclasses.fields(cls):
        if f.name in ("name", "source_file"):
            continue
        path = f"{where}.{f.name}" if where else f.name
        tp = typing.get_type_hints(cls)[f.name]
        options = [o for o in typing.get_args(tp) if o is not type(None)] if typing.get_origin(tp) in (
            typing.Union, __import__("types").UnionType) else [tp]
        for option in options:
            origin, args = typing.get_origin(option), typing.get_args(option)
            if dataclasses.is_dataclass(option):
                yield from _numeric_paths(option, path)
            elif option in (int, float) or (origin is tuple and args and args[0] in (int, float)):
                yield path
            elif origin is dict and args[1] in (int, float):
                yield f"{path}.*"


def test_every_numeric_field_of_the_spec_has_a_range():
    paths = set(_numeric_paths(BuildSpec))
    assert len(paths) > 50
    assert paths - SPEC_BOUNDS.keys() == set(), "add a range to jobs/core/spec/bounds.py SPEC_BOUNDS"
    assert SPEC_BOUNDS.keys() - paths == set(), "a range for a field that no longer exists"


def _with(tmp_path, section: str, values: dict) -> str:
    data = yaml.safe_load((BUILDS_DIR / "smoke.yaml").read_text())
    target = data
    for part in section.split("."):
        target = target.setdefault(part, {})
    target.update(values)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("section, key, value, expected", [
    ("train", "learning_rate", float("nan"), "train.learning_rate: must be in (0.0, 1.0], got nan"),
    ("train", "learning_rate", float("inf"), "train.learning_rate: must be in (0.0, 1.0], got inf"),
    ("train", "max_steps", 10**30, "train.max_steps: must be in [1, 10,000,000], got an integer of 31 digits"),
    ("train", "seed", -1, "train.seed: must be in [0, 4,294,967,295], got -1"),
    ("train", "memory_budget_gib", float("-inf"), "train.memory_budget_gib: must be in (0.0, 1024.0], got -inf"),
    ("train.lora", "r", 10**9, "train.lora.r: must be in [1, 1,024], got 1,000,000,000"),
    ("train.execution", "cpu_threads", 10**6, "train.execution.cpu_threads: must be in [1, 1,024]"),
    ("curate", "eval_fraction", 1.0, "curate.eval_fraction: must be in [0.0, 1.0), got 1.0"),
    ("curate", "semantic_threshold", float("nan"), "curate.semantic_threshold: must be in [-1.0, 1.0], got nan"),
    ("eval", "max_new_tokens", 10**12, "eval.max_new_tokens: must be in [1, 32,768]"),
    ("eval.gate", "min", {"bleu": float("nan")}, "eval.gate.min.bleu: must be in [0.0, 1000000.0], got nan"),
    ("base_model.tiny", "vocab_size", 10**40, "base_model.tiny.vocab_size: must be in [1, 262,144]"),
    ("synthesize", "temperature", float("inf"), "synthesize.temperature: must be in [0.0, 2.0], got inf"),
    ("synthesize", "answer_chars", [0, 10**20], "synthesize.answer_chars[1]: must be in [0, 100,000]"),
    ("synthesize.writer", "timeout_s", float("nan"), "synthesize.writer.timeout_s: must be in (0.0, 3600.0]"),
])
def test_out_of_range_nan_and_infinite_numbers_are_refused_with_their_range(tmp_path, section, key, value, expected):
    with pytest.raises(SpecError) as err:
        load_spec(_with(tmp_path, section, {key: value}))
    assert expected in str(err.value)
    assert str(tmp_path / "bad.yaml") in str(err.value)


def test_yaml_spellings_of_nan_and_infinity_are_refused(tmp_path):
    text = (BUILDS_DIR / "smoke.yaml").read_text().replace("learning_rate: 1.0e-3", "learning_rate: .nan")
    text = text.replace("max_steps: 12", "max_steps: 1000000000000000000000000000000")
    path = tmp_path / "nan.yaml"
    path.write_text(text.replace("  batch_size: 1\n", "  batch_size: 1\n  weight_decay: -.inf\n", 1))
    msg = str(pytest.raises(SpecError, load_spec, path).value)
    assert "3 problem(s)" in msg
    assert "train.learning_rate: must be in (0.0, 1.0], got nan" in msg
    assert "train.weight_decay: must be in [0.0, 10.0], got -inf" in msg
    assert "train.max_steps: must be in [1, 10,000,000], got an integer of 31 digits" in msg


def test_the_edges_of_a_range_are_inside_it():
    assert Range(1, 5).holds(1) and Range(1, 5).holds(5)
    assert not Range(0.0, 1.0, open_low=True).holds(0.0) and not Range(0.0, 1.0, open_high=True).holds(1.0)
    assert not any(Range(-1e300, 1e300).holds(v) for v in (float("nan"), float("inf"), float("-inf")))
