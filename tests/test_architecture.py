"""The architecture's import rules, checked on the source: no stage imports a sibling stage, jobs/core imports
no stage, workflows/ imports no stage, and no module reaches itself through others (an import cycle, even one
hidden in a function-level import)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("curate", "synthesize", "train", "eval", "serve")
# Apps over the stages' outputs, not stages (no image, no workflow step): each may import exactly these modules of
# the stages. The studio presents eval's comparison with eval's own torch-free code (one home for the comparison
# the terminal prints) and chats through serve's OpenAI-compatible server (one generation path), and no stage or
# core module may import it.
APPS = {"jobs.studio": {"jobs.eval.report", "jobs.eval.diagnose", "jobs.serve.api", "jobs.serve.builds",
                        "jobs.serve.worker"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    files = [*REPO.joinpath("jobs").rglob("*.py"), *REPO.joinpath("workflows").rglob("*.py")]
    return {_module_name(p): p for p in sorted(files)}


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """Project modules that `name` imports anywhere in its file (top level or inside a function)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from jobs.curate import parse_md` imports the module jobs.curate.parse_md
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "jobs" and len(parts) > 1 and parts[1] in STAGES else None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_stage_imports_a_sibling_and_core_and_workflows_import_no_stage(module):
    own = _stage(module)
    app = next((a for a in APPS if module == a or module.startswith(a + ".")), None)
    for target in GRAPH[module]:
        if any(target == a or target.startswith(a + ".") for a in APPS) and app is None:
            pytest.fail(f"{module} imports the app {target}: apps sit on top; nothing imports them")
        if app and target in APPS[app]:
            continue
        other = _stage(target)
        if other and other != own:
            where = "jobs.core" if module.startswith("jobs.core") else module.split(".")[0] if own is None else own
            pytest.fail(f"{module} ({where}) imports {target}: share it through jobs/core instead")


def test_no_module_imports_itself_through_another():
    cycles = []
    for start in sorted(MODULES):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(GRAPH[node]):
                if nxt == start:
                    cycles.append(" -> ".join(path + [start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))


def test_the_walk_sees_the_imports_it_checks():
    # The rules above pass vacuously if the walk finds nothing; these edges are known to exist.
    assert "jobs.core.spec" in GRAPH["jobs.curate.run"]
    assert "jobs.curate.parse_tex" in GRAPH["jobs.curate.documents"]
    assert "jobs.core.spec" in GRAPH["workflows.pipeline"]
