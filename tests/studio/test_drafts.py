"""Reviewing a draft suite in the studio (app tier, FastAPI's TestClient): only with --allow-changes, only a form of
this page (its token, its origin); each decision goes through `make review`'s code into the suite file the CLI
reads, and a bad one is refused with the suite loader's message and the file left as it was."""

from __future__ import annotations

import html
import re

import pytest
import yaml
from fastapi.testclient import TestClient

from jobs.core.repo import BUILDS_DIR
from jobs.core.spec.suite import load_suite
from jobs.core.store.backends import open_store
from jobs.new import review
from jobs.studio import drafts
from jobs.studio.app import FORM_BYTES, make_app
from tests.core.spec.test_suite_review import SUITE

PARAGRAPH = "A colony raises new queens in swarm cells along the bottom edge of the frames."


@pytest.fixture
def specs(tmp_path, monkeypatch):
    """(a folder of specs: `mine`, whose suite is SUITE in tmp, and `broken`; the suite file)."""
    monkeypatch.setenv("QSLM_DATA_ROOT", str(tmp_path))  # the spec loader reads suites only from allowed roots
    suite = tmp_path / "mine-suite.yaml"
    suite.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    spec = yaml.safe_load((BUILDS_DIR / "smoke.yaml").read_text())
    spec["eval"]["suite"] = str(suite)
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "mine.yaml").write_text(yaml.safe_dump(spec))
    (folder / "broken.yaml").write_text("curate: [")
    monkeypatch.setattr(review, "source_paragraphs", lambda spec: {"d.md#q#p0": PARAGRAPH})  # curate's parse
    monkeypatch.setattr(drafts, "_PARAGRAPHS", {})
    return folder, suite


def _client(tmp_path, folder, allow: bool) -> TestClient:
    app = make_app(open_store(str(tmp_path / "store")), tmp_path / "work", allow, specs=folder)
    return TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False)


def _token(client) -> str:
    return re.search(r'id="csrf" value="([^"]+)"', client.get("/running").text).group(1)


def test_a_read_only_studio_neither_shows_nor_takes_a_review(tmp_path, specs):
    folder, suite = specs
    before = suite.read_text()
    client = _client(tmp_path, folder, allow=False)
    assert 'href="/review"' not in client.get("/").text
    assert client.get("/review").status_code == 403 and client.get("/review/mine").status_code == 403
    r = client.post("/review/mine", data={"csrf": _token(client), "id": "a-01", "action": "accept"})
    assert r.status_code == 403 and "read-only" in r.text and "--allow-changes" in r.text
    assert suite.read_text() == before


def test_the_suites_and_a_suites_drafts_with_their_paragraphs(tmp_path, specs):
    folder, suite = specs
    client = _client(tmp_path, folder, allow=True)
    listing = client.get("/review").text
    assert 'href="/review"' in listing and '<a href="/review/mine">mine</a>' in listing
    assert re.search(r"<td class=\"num\">3</td><td class=\"num\">1</td>", listing)  # 3 draft, 1 reviewed
    assert "broken.yaml" in listing and "not valid YAML" in listing  # named, with the loader's message
    page = client.get("/review/mine").text
    assert re.findall(r'data-id="([^"]+)"', page) == ["a-01", "a-02", "abstain-01"]  # the drafts, in file order
    assert f"from <code>d.md#q#p0</code>: {PARAGRAPH}" in page
    assert "from <code>d.md#v#p0</code>: (paragraph not found in the documents" in page
    assert 'value="queen"' in page and page.count('name="concepts"') == 2  # an abstain item has no concepts
    assert client.get("/review/nope").status_code == 404


def test_decisions_saved_in_the_page_are_in_the_file_the_cli_reads(tmp_path, specs):
    folder, suite = specs
    client = _client(tmp_path, folder, allow=True)
    token = _token(client)
    edit = {"csrf": token, "id": "a-01", "action": "edit", "question": "What raises swarm cells?", "reference": "",
            "concepts": "queen|queen cell, swarm"}
    r = client.post("/review/mine", data=edit)
    assert r.status_code == 303 and r.headers["location"] == "/review/mine"
    assert client.post("/review/mine", data={"csrf": token, "id": "a-02", "action": "accept",
                                             "question": "ignored: accept takes the draft"}).status_code == 303
    assert client.post("/review/mine", data={"csrf": token, "id": "abstain-01", "action": "drop"}).status_code == 303
    questions = {q.id: q for q in load_suite(suite).questions}
    assert sorted(questions) == ["a-01", "a-02", "hand-01"] and {q.status for q in questions.values()} == {"reviewed"}
    assert questions["a-01"].question == "What raises swarm cells?"
    assert questions["a-01"].reference == SUITE["questions"][0]["reference"]  # blank keeps it, as in the terminal
    assert [(c.name, c.synonyms) for c in questions["a-01"].concepts] == [("queen", ("queen cell",)), ("swarm", ())]
    assert questions["a-02"].question == SUITE["questions"][1]["question"]
    said = []
    assert review.run(suite, {}, ask=lambda _: "q", say=said.append) == {"questions": 3, "draft": 0, "reviewed": 3}
    assert "No draft questions left" in client.get("/review/mine").text


def test_bad_or_foreign_decisions_are_refused_and_the_file_kept(tmp_path, specs):
    folder, suite = specs
    client = _client(tmp_path, folder, allow=True)
    token, before = _token(client), suite.read_text()
    form = {"csrf": token, "id": "a-01", "action": "edit"}
    too_long = client.post("/review/mine", data={**form, "question": "q" * 4001})
    assert too_long.status_code == 400 and "more than the 4,000 a question may have" in too_long.text
    assert "q" * 4001 in too_long.text  # the edit is kept in the form, to shorten it
    assert client.post("/review/mine", data={**form, "action": "rename"}).status_code == 400
    gone = client.post("/review/mine", data={**form, "id": "hand-01", "action": "accept"})
    assert gone.status_code == 400 and "no draft question 'hand-01'" in html.unescape(gone.text)
    assert client.post("/review/mine", data={**form, "csrf": "guess"}).status_code == 403
    foreign = client.post("/review/mine", data=form, headers={"Origin": "http://attacker.example"})
    assert foreign.status_code == 403 and "another site" in foreign.text
    huge = client.post("/review/mine", data={**form, "reference": "r" * FORM_BYTES})
    assert huge.status_code == 403 and "over 65,536 bytes" in huge.text
    assert client.post("/review/mine", data=form, headers={"Host": "attacker.example"}).status_code == 421
    assert suite.read_text() == before
