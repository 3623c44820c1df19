"""The build spec: one YAML file per build tag, loaded into frozen dataclasses and checked completely.

    from jobs.core.spec.load import spec_by_tag, load_spec
    spec = spec_by_tag("v1")            # data/builds/v1.yaml
    python -m jobs.core.spec v2 [SPEC ...]   # only the check: what `make build`, `make submit` and the workflow do first

Every problem in a spec file (unknown keys, wrong types, values outside their choices or bounds, files that do not
exist) is collected and raised together as one SpecError that names the file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jobs.core.repo import BUILDS_DIR
from jobs.core.spec.checks import check_values
from jobs.core.spec.parse import INVALID, build
from jobs.core.spec.schema import BuildSpec, SpecError
from jobs.core.spec.tags import check_tag
from jobs.core.spec.yamlfile import problems, read_yaml


def load_spec(path: str | Path, needs_suite: bool = True) -> BuildSpec:
    """Load and validate a build spec file (YAML, or the JSON that `BuildSpec.to_json` writes). `needs_suite`
    False: a committed build's spec read to use the build (ask, serve, export), which measures nothing."""
    path = Path(path)
    data, _ = read_yaml(path, SpecError, "build spec")
    if isinstance(data, dict):
        # A resolved spec (to_json) carries its name and origin; a YAML spec takes its name from the file stem.
        data = dict(data)
        name = data.pop("name", None) or path.stem
        data.pop("source_file", None)
    else:
        name = path.stem
    errors: list[str] = []
    spec = build(BuildSpec, data, "", errors)
    if spec is not INVALID:
        spec = dataclasses.replace(spec, name=name, source_file=str(path.resolve()))
        check_values(spec, errors, needs_suite)
    if errors:
        raise SpecError(problems(path, "build spec", errors))
    return spec


def available_tags(folder: Path = BUILDS_DIR) -> list[str]:
    return sorted(p.stem for p in Path(folder).glob("*.yaml"))


def spec_by_tag(tag: str, folder: Path = BUILDS_DIR) -> BuildSpec:
    """Load data/builds/<tag>.yaml (or <tag>.yaml in another folder of specs: the studio's --specs); refuse names
    that are not plain tags, and name the tags that exist."""
    folder = Path(folder)
    known = ", ".join(available_tags(folder)) or "(none)"
    try:
        check_tag(tag)
    except SpecError as exc:
        raise SpecError(f"{exc}. Build specs in {folder}: {known}") from None
    path = folder / f"{tag}.yaml"
    if not path.is_file():
        raise SpecError(f"no build spec for tag {tag!r}: {path} does not exist. Build specs: {known}. "
                        f"To make a new build, copy one of them to data/builds/{tag}.yaml and edit it.")
    return load_spec(path)

