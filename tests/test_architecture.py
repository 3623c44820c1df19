"""The architecture's import rules, checked on the source: no stage imports a sibling stage, jobs/core imports
no stage, workflows/ imports no stage, the packages of jobs/core import only what their docstrings allow (spec and
store import no torch; the engine imports no store), nothing in the product imports the tools in bench/, and no
module reaches itself through others (an import cycle, even one hidden in a function-level import)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("curate", "synthesize", "train", "eval", "serve")
# Apps over the stages' outputs, not stages (no image, no workflow step): each may import exactly these modules of
# the stages. The studio presents eval's comparison with eval's own torch-free code (one home for the comparison
# the terminal prints) and chats through serve's OpenAI-compatible server (one generation path), with the builds'
# indexes loaded as serve loads them, and no stage or core module may import it.
APPS = {"jobs.studio": {"jobs.eval.report", "jobs.eval.diagnose", "jobs.serve.api", "jobs.serve.builds",
                        "jobs.serve.retrieval", "jobs.serve.worker"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    files = [*REPO.joinpath("jobs").rglob("*.py"), *REPO.joinpath("workflows").rglob("*.py"),
             *REPO.joinpath("bench").rglob("*.py")]
    return {_module_name(p): p for p in sorted(files)}


MODULES = _modules()


def _imports(name: str, everything: bool = False) -> set[str]:
    """Project modules that `name` imports anywhere in its file (top level or inside a function); with
    `everything`, outside modules too (their top-level names: torch, transformers...)."""
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
        if everything:
            found |= {t.split(".")[0] for t in targets if t.split(".")[0] not in ("jobs", "workflows", "bench")}
    return found


GRAPH = {name: _imports(name) for name in MODULES}

# What each package of jobs/core may import (besides itself), as its docstring says.
CORE_RULES = {
    "jobs.core.errors": (),
    "jobs.core.repo": (),
    "jobs.core.progress": (),
    "jobs.core.spec": ("jobs.core.errors", "jobs.core.repo"),
    "jobs.core.store": ("jobs.core.errors", "jobs.core.repo", "jobs.core.spec"),
    "jobs.core.text": ("jobs.core.errors", "jobs.core.repo", "jobs.core.spec"),
    "jobs.core.engine": ("jobs.core.errors", "jobs.core.repo", "jobs.core.spec"),
    "jobs.core.retrieval": ("jobs.core.errors", "jobs.core.repo", "jobs.core.spec", "jobs.core.text", "jobs.core.store"),
}
ML = ("torch", "transformers", "peft", "bitsandbytes", "sentence_transformers", "accelerate")
TORCH_FREE = ("jobs.core.errors", "jobs.core.repo", "jobs.core.progress", "jobs.core.spec", "jobs.core.store",
              "workflows")
# The one engine module orchestration may use: it resolves (and for the tiny model, makes) the base model with
# numpy and tokenizers, no torch; the local build calls it to fail fast before any stage runs.
ORCHESTRATION_MAY_USE = ("jobs.core.engine.basemodel",)


def _package(module: str, packages) -> str | None:
    return next((p for p in packages if module == p or module.startswith(p + ".")), None)


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "jobs" and len(parts) > 1 and parts[1] in STAGES else None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("bench")))  # tools may
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


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("jobs.core.")))
def test_core_packages_import_only_what_they_allow(module):
    own = _package(module, CORE_RULES)
    assert own, f"{module}: every module of jobs/core belongs to one of {', '.join(CORE_RULES)}"
    for target in GRAPH[module]:
        theirs = _package(target, CORE_RULES)
        if theirs != own and theirs not in CORE_RULES[own]:
            pytest.fail(f"{module} imports {target}: {own} may import {', '.join(CORE_RULES[own]) or 'nothing'}")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _package(m, TORCH_FREE)))
def test_spec_store_and_orchestration_import_no_ml_library(module):
    ml = sorted(_imports(module, everything=True) & set(ML))
    assert not ml, f"{module} imports {', '.join(ml)}: keep ML code in jobs/core/engine and the stages"
    if module.startswith("workflows."):
        engine = [t for t in GRAPH[module] if t.startswith("jobs.core.engine") and t not in ORCHESTRATION_MAY_USE]
        assert not engine, f"{module} imports {engine}: orchestration never loads a model"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("bench")))
def test_the_product_never_imports_the_tools(module):
    tools = [t for t in GRAPH[module] if t.split(".")[0] == "bench"]
    assert not tools, f"{module} imports {tools}: bench/ holds development tools, not product code"


def test_no_two_modules_share_a_name():
    """Two modules of one name doing different things is a bug waiting (jobs/ and workflows/; each stage's run.py,
    __main__.py and __init__.py are the one convention that repeats)."""
    seen: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        if not name.startswith("bench") and path.name not in ("__init__.py", "__main__.py", "run.py"):
            seen.setdefault(path.name, []).append(name)
    assert not {k: v for k, v in seen.items() if len(v) > 1}


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
    assert "jobs.core.spec.schema" in GRAPH["jobs.curate.run"]
    assert "jobs.curate.parse_tex" in GRAPH["jobs.curate.documents"]
    assert "jobs.core.spec.metrics" in GRAPH["workflows.pipeline"]
    assert "jobs.core.spec.load" in GRAPH["jobs.core.store.publish"]
    assert "torch" in _imports("jobs.core.engine.fastgen", everything=True)
