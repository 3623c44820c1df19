"""The overrides file: wrong shapes and types are one clear error naming the file; its content is never echoed."""

import re

import pytest

from jobs.core.spec.overrides import OverridesError, read_overrides

SECRET = "sk-live-0123456789abcdef"


@pytest.mark.parametrize("content, expected", [
    ("pin: 3\n", "pin: expected a list of paragraph ids, got a int"),
    ("pin: [[a, b], {x: 1}, 7, '']\n", r"pin: item\(s\) 0, 1, 2, 3 are not paragraph id strings"),
    (f"- {SECRET}\n", "an overrides file is a mapping with keys pin and/or drop"),
    (f"pin: [{SECRET}]\ndrop: [x, {SECRET}]\n", r"1 id\(s\) both pinned and dropped: drop item\(s\) 1"),
    ("pin: [" + "9" * 5000 + "]\n", "cannot be read"),
    ("pin: " + "[" * 100 + "]" * 100 + "\n", "nests deeper"),
    (f"pin: [a]\npin: [{SECRET}]\n", "duplicate key 'pin'"),
])
def test_wrong_types_are_one_clear_error_without_the_content(tmp_path, content, expected):
    path = tmp_path / "overrides.yaml"
    path.write_text(content)
    msg = str(pytest.raises(OverridesError, read_overrides, path).value)
    assert msg.startswith(str(path)) and re.search(expected, msg) and SECRET not in msg, msg


def test_an_unknown_key_is_named_short(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text(f"pinn{'x' * 1000}: [a]\n")
    msg = str(pytest.raises(OverridesError, read_overrides, path).value)
    assert "pinnxxx" in msg and "unknown key (known keys: pin, drop)" in msg and len(msg) < 300


def test_a_valid_file_reads(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text("pin: [a#b#p0]\ndrop: [c#d#p1]\n")
    ov = read_overrides(path)
    assert ov.pin == {"a#b#p0"} and ov.drop == {"c#d#p1"}
