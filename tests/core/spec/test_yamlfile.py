"""Hostile YAML (specs, suites, overrides come from whoever opens a pull request) is refused quickly, in one
short message naming the file, never by exhausting memory or with a traceback."""

import pytest

from jobs.core.spec.overrides import OverridesError, read_overrides
from jobs.core.spec.schema import SpecError
from jobs.core.spec.load import load_spec
from jobs.core.spec.suite import SuiteError, load_suite
from jobs.core.spec.yamlfile import MAX_BYTES, brief

# Nine levels of nine aliases: 9**9 = 387 million strings once expanded, from 500 bytes of YAML.
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))

HOSTILE = {
    "alias bomb": (BOMB, "expands to more than 200,000 values"),
    "deep nesting": ("k: " + "[" * 5000 + "]" * 5000 + "\n", "nests deeper than 32 levels"),
    "recursive alias": ("k: &r [1, *r]\n", "refers to the value that contains it"),
    "huge integer": ("k: " + "7" * 5000 + "\n", "more than 4300 digits|Exceeds the limit"),
    "duplicate key": ("k: 1\nk: 2\n", "duplicate key 'k'"),
    "python object": ("k: !!python/object/apply:os.system [echo pwned]\n", "not valid YAML"),
    "not utf-8": (b"k: \xff\xfe\n", "not UTF-8"),
}


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("kind", ["spec", "suite", "overrides"])
def test_hostile_yaml_is_one_short_error(tmp_path, case, kind):
    content, expected = HOSTILE[case]
    path = _write(tmp_path, f"{kind}.yaml", content)
    load, error = {"spec": (load_spec, SpecError), "suite": (load_suite, SuiteError),
                   "overrides": (read_overrides, OverridesError)}[kind]
    with pytest.raises(error, match=expected) as err:
        load(path)
    assert str(err.value).startswith(str(path)) and len(str(err.value)) < 400


def test_a_bomb_inside_a_valid_looking_spec_is_refused(tmp_path):
    path = _write(tmp_path, "bomb.yaml", BOMB + "base_model: {id: x}\ncurate: {keywords: *i}\n")
    with pytest.raises(SpecError, match="expands to more than"):
        load_spec(path)


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * MAX_BYTES + b"\n")
    with pytest.raises(SuiteError, match=f"the limit is {MAX_BYTES:,}"):
        load_suite(path)


def test_error_messages_show_values_only_as_short_previews(tmp_path):
    secret = "s3cr3t-" + "y" * 100_000
    path = _write(tmp_path, "spec.yaml", f"base_model: {{id: x}}\ncurate: {{keywords: [k], seed: '{secret}'}}\n"
                                          f"train: {{batch_size: [{', '.join(['1'] * 5000)}]}}\n")
    msg = str(pytest.raises(SpecError, load_spec, path).value)
    assert "curate.seed: expected an integer, got str 's3cr3t-yyy" in msg and "train.batch_size" in msg
    assert "a list of 5000 item(s)" in msg and len(msg) < 600


def test_brief():
    assert brief("short") == "'short'" and brief([1, 2]) == "a list of 2 item(s)" and brief({}) == "a mapping of 0 key(s)"
    assert len(brief("z" * 10_000)) < 80 and len(brief(10 ** 1000)) < 80
