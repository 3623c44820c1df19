"""What the fault tier's tests share: the figures, stage folders with large random artifacts, publish processes
that start on a signal, and the end-of-test re-hash of every committed build."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

from jobs.core.store.registry import complete_tags, verify_build
from tests.conftest import REPO

SEED = int(os.environ.get("QSLM_FAULT_SEED", "16"))
FIGURES: Counter = Counter()
SECRET = b"hunter2-fault-tier-secret"  # planted in every source folder as .env; must never reach a store


def check_committed(store) -> None:
    """Re-hash every committed build of `store`; not one file may differ from its manifest, and no stored
    object may hold the planted secret."""
    for tag in complete_tags(store):
        result = verify_build(store, tag)
        FIGURES["committed builds re-hashed"] += 1
        FIGURES["files re-hashed"] += result.files
        FIGURES["damaged committed builds"] += bool(result.damaged)
        assert result.damaged == [], f"committed build {tag} in {store.url} is damaged: {result.damaged}"
    leaked = {k: store.get_bytes(k).count(SECRET) * len(SECRET) for k in store.list("")}
    FIGURES["bytes of the planted secret stored"] += sum(leaked.values())
    assert not any(leaked.values()), leaked


def fault_env(store_url: str, **extra) -> dict:
    env = dict(os.environ, QSLM_STORE=store_url, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env | {k: str(v) for k, v in extra.items()}


# ---------------------------------------------------------------- stage folders and publish processes

DOC = "# Kernels\nA quantum kernel is the overlap of two feature states.\n"


def make_build(root: Path, seed: int, adapter_mib: int = 12) -> tuple[Path, list[Path]]:
    """A spec and the three stage folders of one build with large random artifacts (different per seed), as
    the stages leave them; its source folder also holds a `.env` with the secret, which curate never reads."""
    rnd = random.Random(seed)
    docs = root / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "a.md").write_text(DOC)
    (docs / ".env").write_bytes(b"AWS_SECRET_ACCESS_KEY=" + SECRET + b"\n")
    suite = root / "suite.yaml"
    suite.write_text("name: t\nquestions:\n  - {id: q1, question: What is a kernel, reference: An overlap, "
                     "concepts: [kernel], topic: k}\n")
    spec = root / "spec.yaml"
    spec.write_text(f"base_model: {{id: tiny-test}}\ncurate: {{keywords: [kernel], sources: [{docs}]}}\n"
                    f"eval: {{suite: {suite}}}\n")
    d, a, r = (root / f"{name}-{seed}" for name in ("dataset", "adapter", "report"))
    for f in (d, a, r):
        f.mkdir(parents=True)
    read = [{"path": f"{docs.name}/a.md", "sha256": hashlib.sha256(DOC.encode()).hexdigest(), "bytes": len(DOC)}]
    (d / "train.parquet").write_bytes(rnd.randbytes(3 << 20))
    (d / "curate-info.json").write_text(json.dumps({"seconds": 1, "dataset_sha256": "d" * 64, "sources": read}))
    (a / "adapter_model.safetensors").write_bytes(rnd.randbytes(adapter_mib << 20))
    (a / "adapter_config.json").write_text(json.dumps({"r": 16, "seed": seed}))
    (a / "train-info.json").write_text(json.dumps({"seconds": 1}))
    (r / "metrics.json").write_text(json.dumps({"headline": {"concept_recall": rnd.random()}}))
    (r / "gate.json").write_text(json.dumps({"passed": True, "checks": []}))
    (r / "eval-info.json").write_text(json.dumps({"seconds": 1}))
    return spec, [d, a, r]


# A command (publish here; the registry CLI in test_registry_race) that imports everything first, says so, then
# waits for the go file: the test starts racing or timing from the moment the work begins, not Python's start-up.
READY_THEN_GO_TEMPLATE = """
import sys, time
from pathlib import Path
from {module} import main
print("ready", flush=True)
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.005)
sys.exit(main(sys.argv[2:]))
"""
READY_THEN_GO = READY_THEN_GO_TEMPLATE.format(module="jobs.core.store.publish")


def start_publish(spec: Path, tag: str, folders: list[Path], go: Path, env: dict) -> subprocess.Popen:
    d, a, r = folders
    args = ["--spec", str(spec), "--tag", tag, "--dataset", str(d), "--adapter", str(a), "--report", str(r)]
    proc = subprocess.Popen([sys.executable, "-c", READY_THEN_GO, str(go), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
