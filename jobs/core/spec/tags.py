"""Build tags: the one pattern a tag must match, checked in one place for every command that takes one.

A tag names a spec file (data/builds/<tag>.yaml), a folder in the store (builds/<tag>/), a container image tag
and an Argo workflow name, so it is a plain name: no slashes, no leading dot, at most 63 characters.
"""

from __future__ import annotations

import re

from jobs.core.spec.schema import SpecError
from jobs.core.spec.yamlfile import brief

TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")  # \Z: `$` would accept a trailing newline
TAG_RULE = "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 characters (no slashes)"


def is_tag(value: object) -> bool:
    return isinstance(value, str) and TAG_PATTERN.match(value) is not None


def check_tag(value: object, error: type[Exception] = SpecError) -> str:
    """`value` when it is a valid build tag; else raises `error` naming the rule."""
    if not is_tag(value):
        raise error(f"{brief(value)} is not a valid build tag: use {TAG_RULE}")
    return value
