"""Reading the YAML files a person writes (build specs, eval suites, overrides): one place, one set of errors.

These files may come from anyone who can open a pull request, so reading one is bounded: its size in bytes,
the number of values it holds once YAML aliases are expanded (an alias bomb of a few hundred bytes would
otherwise expand to billions), its nesting depth, and duplicate keys (YAML keeps the last one silently).
Error messages name the file and the place, and show a value only as a short preview (`brief`).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from jobs.core.errors import QslmError

MAX_BYTES = 8 << 20  # 8 MiB: the shipped suite is 20 KiB; a 2000-question suite with long references fits
MAX_VALUES = 200_000  # scalars, lists and mappings after expanding aliases
MAX_DEPTH = 32  # nesting levels; a spec is 4 deep
MAX_PROBLEMS = 20  # problems listed in one error; the rest are counted


def brief(value, limit: int = 60) -> str:
    """A short preview of a value for an error message: never the whole of a long string or a large list."""
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    text = repr(value) if not isinstance(value, str) or len(value) <= limit else repr(value[:limit]) + "..."
    return text if len(text) <= limit + 8 else text[:limit] + "..."


def problems(path, what: str, errors: list[str]) -> str:
    """The one message for every problem found in a file: its path, the count, and at most MAX_PROBLEMS lines."""
    listing = "\n".join(f"  - {e}" for e in errors[:MAX_PROBLEMS])
    more = f"\n  ... and {len(errors) - MAX_PROBLEMS} more" if len(errors) > MAX_PROBLEMS else ""
    return f"{path}: {len(errors)} problem(s) in this {what}:\n{listing}{more}"


class _Refused(Exception):
    pass


def _measure(node: Node, sizes: dict[int, tuple[int, int]], open_: set[int]) -> tuple[int, int]:
    """(values, depth) of a node with aliases expanded; each node object is measured once (aliases share it)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise _Refused("an alias refers to the value that contains it (a recursive structure)")
    open_.add(id(node))
    if isinstance(node, ScalarNode):
        children: list[Node] = []
    elif isinstance(node, SequenceNode):
        children = list(node.value)
    else:
        assert isinstance(node, MappingNode)
        children = [n for pair in node.value for n in pair]
    count, depth = 1, 0
    for child in children:
        c, d = _measure(child, sizes, open_)
        count, depth = count + c, max(depth, d)
        if count > MAX_VALUES:
            raise _Refused(f"it expands to more than {MAX_VALUES:,} values (YAML aliases?)")
    if depth + 1 > MAX_DEPTH:
        raise _Refused(f"it nests deeper than {MAX_DEPTH} levels")
    open_.discard(id(node))
    sizes[id(node)] = (count, depth + 1)
    return sizes[id(node)]


class _Loader(yaml.SafeLoader):
    depth = composed = 0

    def compose_node(self, parent, index):
        # Refused while composing: PyYAML would recurse until a RecursionError, or build millions of nodes.
        self.depth, self.composed = self.depth + 1, self.composed + 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Refused(f"it nests deeper than {MAX_DEPTH} levels")
            if self.composed > MAX_VALUES:
                raise _Refused(f"it holds more than {MAX_VALUES:,} values")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if key is not None and key in seen and key_node.tag != "tag:yaml.org,2002:merge":
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {brief(key)}",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _parse(text: str):
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: str | Path, error: type[QslmError], what: str):
    """(parsed data, raw bytes) of a YAML file; a missing, unreadable, oversized or malformed file raises `error`
    naming the file and what it should be (`what`: "build spec", "eval suite", ...)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise error(f"{path}: this {what} is {size:,} bytes; the limit is {MAX_BYTES:,}. Is it the right file?")
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read this {what} ({exc.strerror})") from None
    try:
        return _parse(raw.decode("utf-8")), raw
    except UnicodeDecodeError as exc:
        raise error(f"{path}: this {what} is not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from None
    except _Refused as exc:
        raise error(f"{path}: this {what} is refused: {exc}") from None
    except RecursionError:
        raise error(f"{path}: this {what} is refused: it nests deeper than {MAX_DEPTH} levels") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise error(f"{path}: this {what} is not valid YAML{where}: {str(problem)[:120]}") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4300 digits
        raise error(f"{path}: this {what} holds a value that cannot be read: {str(exc).split(';')[0][:120]}") from None
