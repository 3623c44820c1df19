"""A build from the store into a local cache, checked against its manifest before every use.

    build = open_build(store, "smoke", ("adapter",))      # $QSLM_CACHE/builds/smoke-<manifest hash>/adapter/
    engine = load_engine([build])                          # the base as trained, the adapter under its tag

The cache is keyed by tag and manifest hash: a tag is immutable once complete, so a folder of that name can only
ever hold that build's files. Each use re-hashes the cached files against the manifest's sha256 (a damaged or
edited cache is fetched again); the store's copy is checked by jobs.core.store.registry.fetch_artifact, which refuses a
tampered build with IntegrityError. A tag without a manifest (unknown, or still being built) is refused by
read_manifest, which names the complete tags.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jobs.core.engine.basemodel import cache_dir
from jobs.core.store.provenance import sha256_file
from jobs.core.store.registry import artifact_files, complete_tags, current_tag, fetch_artifact, read_manifest
from jobs.core.spec.schema import BuildSpec
from jobs.core.spec.load import load_spec
from jobs.serve import ServeError
from jobs.serve.protocol import BASE_MODEL

# Spec fields that name files on the machine that made the build (sources, overrides, eval suite). Serving needs
# none of them, and a cluster build's paths (/app/data/...) do not exist here, so they load as this repo's defaults.
BUILD_MACHINE_PATHS = {"curate": ("sources", "overrides"), "eval": ("suite",)}


@dataclass(frozen=True)
class Build:
    tag: str
    manifest: dict
    spec: BuildSpec  # the build's own resolved spec, from its manifest
    folder: Path  # the cache folder: manifest.json, spec.json and the fetched artifacts

    @property
    def passed(self) -> bool:
        return self.manifest.get("status") == "passed"

    def artifact(self, name: str) -> Path:
        return self.folder / name

    def label(self) -> str:
        """How the build is introduced to a user: its tag and whether it passed its eval gate."""
        if self.passed:
            return f"{self.tag} (passed its eval gate)"
        failed = [c["message"] for c in self.manifest.get("gate", {}).get("checks", []) if not c.get("passed")]
        return (f"{self.tag} (FAILED its eval gate{': ' + '; '.join(failed) if failed else ''}; it can be asked "
                f"but not promoted)")

    def system_prompt(self, audience_text: str | None = None) -> str | None:
        """The system message the adapter was trained with (curate writes the spec's curate.system_prompt into
        every example, followed by an audience's prompt in the audience variants), so it is asked the same way."""
        return " ".join(s for s in (self.spec.curate.system_prompt, audience_text) if s) or None


def manifest_digest(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def _cached_ok(manifest: dict, tag: str, artifact: str, folder: Path) -> bool:
    records = [rec for _, rec in artifact_files(manifest, tag, artifact)]  # the manifest read as the registry reads it
    return all((folder / r["path"]).is_file() and sha256_file(folder / r["path"]) == r["sha256"] for r in records)


def _ensure(store, tag: str, manifest: dict, artifact: str, folder: Path) -> None:
    """The artifact's files in `folder`, each matching the manifest; fetched from the store when they do not."""
    if folder.is_dir() and _cached_ok(manifest, tag, artifact, folder):
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{artifact}-", dir=folder.parent))
    try:
        fetch_artifact(store, tag, artifact, tmp / artifact)  # raises IntegrityError on a tampered store copy
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp / artifact, folder)  # another process may win the race: its copy is as good as ours
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def serving_spec(manifest: dict, folder: Path) -> BuildSpec:
    """The build's resolved spec (base model, quantization, system prompt...) as a BuildSpec, validated."""
    data = json.loads(json.dumps(manifest["spec"]))
    for section, fields in BUILD_MACHINE_PATHS.items():
        for name in fields:
            data.get(section, {}).pop(name, None)
    path = folder / "spec.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    return load_spec(path, needs_suite=False)  # using a build measures nothing: its suite stays where it was built


def open_build(store, tag: str, artifacts: tuple[str, ...] = ("adapter",)) -> Build:
    manifest = read_manifest(store, tag)  # RegistryError for an unknown or incomplete tag, naming complete ones
    folder = cache_dir() / "builds" / f"{tag}-{manifest_digest(manifest)[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    for artifact in artifacts:
        _ensure(store, tag, manifest, artifact, folder / artifact)
    spec = serving_spec(manifest, folder)
    return Build(tag=tag, manifest=manifest, spec=spec, folder=folder)


def pick_tags(store, given: str | None) -> list[str]:
    """Tags from a comma-separated VERSION; none given means the promoted `current` build."""
    tags = [t.strip() for t in (given or "").split(",") if t.strip()]
    if tags:
        if len(set(tags)) != len(tags):
            raise ServeError(f"VERSION={given}: a tag is named twice")
        return tags
    current = current_tag(store)
    if current is None:
        raise ServeError(f"no VERSION given and no build is promoted in {store.url}; name one: VERSION=<tag> "
                         f"(complete builds: {', '.join(complete_tags(store)) or 'none'})")
    return [current]


def _base_key(build: Build) -> dict:
    return {"base_model": build.manifest["spec"]["base_model"], "quantization": build.spec.train.quantization,
            "compute_dtype": build.spec.train.compute_dtype}


def check_one_base(builds: list[Build]) -> None:
    """Several adapters share one loaded base only if every build was trained on that same base, loaded the same
    way (model, 4-bit or not, compute dtype); anything else would answer with an adapter on a foreign base."""
    first = builds[0]
    for other in builds[1:]:
        a, b = (json.dumps(_base_key(x), sort_keys=True) for x in (first, other))
        if a != b:
            raise ServeError(f"builds {first.tag} and {other.tag} were trained on different bases ({first.tag}: {a}; "
                             f"{other.tag}: {b}), so they cannot share one loaded base; serve them separately (one "
                             f"server per base, each on its own PORT)")


def check_not_base(builds: list[Build]) -> None:
    """The server names the base model alone BASE_MODEL beside the tags; a build of that tag would be hidden."""
    if any(b.tag == BASE_MODEL for b in builds):
        raise ServeError(f"build {BASE_MODEL!r} cannot be served: the server names the base model without an adapter "
                         f"{BASE_MODEL!r}; publish the build under another tag (python -m jobs.core.store.publish "
                         f"--tag ...)")


def quiet_libraries() -> None:
    """A person reads this terminal: no weight-loading bars, deprecation notes or optional-kernel warnings."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def load_engine(builds: list[Build], device: str = "auto", batch_size: int = 8, compile_workers: bool = True):
    """The engine with every build's adapter loaded under its tag, over the one base they share, within the
    first build's GPU memory budget (its spec's train.memory_budget_gib: the card it was made for);
    compile_workers=False for a process that answers and exits (EngineSettings)."""
    check_one_base(builds)
    check_not_base(builds)
    quiet_libraries()
    from jobs.core.engine.generation import Engine, EngineSettings

    settings = EngineSettings(device=device, batch_size=batch_size, compile_workers=compile_workers,
                              memory_budget_gib=builds[0].spec.train.memory_budget_gib)
    return Engine.load(builds[0].spec, {b.tag: b.artifact("adapter") for b in builds}, settings)


def describe(builds: list[Build], engine) -> str:
    """One paragraph for a user: which builds, which base, gate status, which generation path."""
    base = builds[0].spec.base_model
    lines = [f"build {b.label()}" for b in builds]
    lines.append(f"base {base.id} ({builds[0].spec.train.quantization}, {builds[0].spec.train.compute_dtype} "
                 f"compute) from {engine.base_dir}")
    lines.append(f"engine {engine.path}: {engine.path_note}")
    return "\n".join(lines)
