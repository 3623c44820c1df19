"""One smoke store shared by every browser test (a session fixture): the real `python -m workflows.build --tag smoke`
(its progress is what the running-build test watches), then `smoke-b`, the same dataset trained for 4 steps instead
of 12 and evaluated against smoke (a known spec difference and a shorter loss curve), `smoke-damaged`, smoke-b's
folders published again under a third tag with one stored file then overwritten, and `smoke-rag`, smoke-b's folders
with a retrieval index (`python -m jobs.index` over smoke's dataset) published under the smoke-rag spec. The studio
runs as a subprocess on a free port from the start of the build, with a folder of specs of its own holding `mine`,
whose suite has draft questions about a document of its own (the review page). Chromium is Debian's
/usr/bin/chromium, driven by Playwright."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from jobs.core.store import registry
from jobs.core.store.backends import open_store
from tests.conftest import REPO, free_port, wait_for
from tests.core.spec.test_suite_review import SUITE

CHROMIUM = Path("/usr/bin/chromium")
BUILD_S = 900  # bound on the smoke build and the two extra builds on a busy 2-core machine


class Smoke:
    def __init__(self, root: Path):
        self.root, self.store, self.work = root, root / "store", root / "work"
        self.env = {**os.environ, "QSLM_STORE": str(self.store), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "QSLM_DATA_ROOT": str(root)}  # the draft suite and its document live here, outside the checkout
        self.log = open(root / "build.log", "wb")
        self.build = subprocess.Popen([sys.executable, "-m", "workflows.build", "--tag", "smoke", "--work",
                                       str(self.work)], cwd=REPO, env=self.env, stdout=self.log, stderr=self.log)
        self.done = False

    def run(self, *args: str) -> None:
        r = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=self.env, capture_output=True, text=True)
        assert r.returncode in (0, 3), f"{args[0]} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"

    def finish(self) -> None:
        """Wait for smoke, then make smoke-b and smoke-damaged (once)."""
        if self.done:
            return
        assert self.build.wait(BUILD_S) == 0, (self.root / "build.log").read_text()[-3000:]
        store, tmp = open_store(str(self.store)), self.root / "b"
        registry.fetch_artifact(store, "smoke", "dataset", tmp / "dataset")
        registry.fetch_artifact(store, "smoke", "report", tmp / "previous")
        spec = yaml.safe_load((REPO / "data/builds/smoke.yaml").read_text())
        spec["train"]["max_steps"] = 4
        (tmp / "smoke-b.yaml").write_text(yaml.safe_dump(spec))
        s = str(tmp / "smoke-b.yaml")
        self.run("jobs.train", "--spec", s, "--dataset", str(tmp / "dataset"), "--out", str(tmp / "adapter"))
        self.run("jobs.eval", "--spec", s, "--dataset", str(tmp / "dataset"), "--adapter", str(tmp / "adapter"),
                 "--out", str(tmp / "report"), "--previous", str(tmp / "previous"))
        for tag in ("smoke-b", "smoke-damaged"):
            self.run("jobs.core.store.publish", "--spec", s, "--tag", tag, "--dataset", str(tmp / "dataset"),
                     "--adapter", str(tmp / "adapter"), "--report", str(tmp / "report"))
        rag = str(REPO / "data/builds/smoke-rag.yaml")
        self.run("jobs.index", "--spec", rag, "--dataset", str(tmp / "dataset"), "--out", str(tmp / "index"))
        self.run("jobs.core.store.publish", "--spec", rag, "--tag", "smoke-rag", "--dataset", str(tmp / "dataset"),
                 "--adapter", str(tmp / "adapter"), "--report", str(tmp / "report"), "--index", str(tmp / "index"))
        manifest = registry.read_manifest(store, "smoke-damaged")
        key = next(k for k, rec in registry.artifact_files(manifest, "smoke-damaged", "report")
                   if rec["path"] == "metrics.json")
        store.put_bytes(key, store.get_bytes(key).replace(b'"questions"', b'"Questions"', 1))  # one bit of rot
        self.done = True


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    s = Smoke(tmp_path_factory.mktemp("studio"))
    yield s
    if s.build.poll() is None:
        s.build.kill()
        s.build.wait()
    s.log.close()


DOCUMENT = """# q

A colony raises new queens in swarm cells along the bottom edge of the frames when it runs out of space in spring.

# v

Oxalic acid dribbled between the frames in the broodless period of midwinter kills most phoretic mites.
"""


def draft_suite(root: Path) -> Path:
    """root/specs/mine.yaml: the smoke spec over root/docs/d.md, its eval suite root/mine-suite.yaml with the draft
    questions of the review tests (their paragraphs renamed to the ids curate gives that document)."""
    (root / "docs").mkdir()
    (root / "docs" / "d.md").write_text(DOCUMENT)
    suite = json.loads(json.dumps(SUITE))
    for q in suite["questions"]:
        q["paragraphs"] = ["docs/" + pid for pid in q.get("paragraphs", [])]
    (root / "mine-suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    spec = yaml.safe_load((REPO / "data/builds/smoke.yaml").read_text())
    spec["curate"]["sources"], spec["eval"]["suite"] = [str(root / "docs")], str(root / "mine-suite.yaml")
    (root / "specs").mkdir()
    (root / "specs" / "mine.yaml").write_text(yaml.safe_dump(spec))
    return root / "mine-suite.yaml"


@pytest.fixture(scope="session")
def studio(smoke):
    """The studio's URL, over the smoke store and its work folder (running builds), with changes allowed and the
    draft suite of draft_suite to review."""
    port = free_port()
    draft_suite(smoke.root)
    log = open(smoke.root / "studio.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "jobs.studio", "--port", str(port), "--work", str(smoke.work),
                             "--allow-changes", "--device", "cpu", "--specs", str(smoke.root / "specs")], cwd=REPO,
                            env=smoke.env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return urllib.request.urlopen(url + "/running", timeout=2).status == 200
        except OSError:
            return False
    assert wait_for(up, 60, 0.2), (smoke.root / "studio.log").read_text()
    yield url
    proc.terminate()
    proc.wait(30)
    log.close()


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A page that records console errors and uncaught exceptions (asserted empty by the tests that open it)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    p = context.new_page()
    p.errors = []
    p.on("console", lambda m: p.errors.append(m.text) if m.type == "error" else None)
    p.on("pageerror", lambda e: p.errors.append(str(e)))
    yield p
    context.close()


def screenshot(page, name: str) -> None:
    """docs/img/studio-<name>.png when QSLM_STUDIO_SCREENSHOTS=1 (the README's pictures), else nothing."""
    if os.environ.get("QSLM_STUDIO_SCREENSHOTS"):
        page.screenshot(path=str(REPO / "docs" / "img" / f"studio-{name}.png"), full_page=False)


def state(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url, timeout=5).read())

