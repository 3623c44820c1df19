"""The studio in a real browser (Chromium) on one shared smoke store: the running build's page while `smoke` builds,
then every page without console errors, sorting and filtering, a known difference in compare, a streamed chat
answer (two builds; base beside a build; with retrieval, its cited passages), a damaged build shown as damaged,
promote through the CSRF-protected form, and a draft suite's review saved into the file `make review` reads."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from jobs.core.spec.suite import load_suite
from jobs.new import review
from tests.conftest import wait_for
from tests.studio.conftest import screenshot, state

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_running_builds_page_updates_while_it_runs(smoke, studio, page):
    assert wait_for(lambda: (smoke.work / "progress" / "smoke.jsonl").is_file(), 60, 0.2)
    page.goto(f"{studio}/running/smoke")
    assert "unverified" in page.inner_text("h1")
    first = page.inner_text("#stage"), page.inner_text("#elapsed")
    page.wait_for_function(f"document.getElementById('stage').textContent + document.getElementById('elapsed')"
                           f".textContent !== {first[0] + first[1]!r}", timeout=120_000)
    page.wait_for_function("document.getElementById('stage').textContent.includes('train') || "
                           "document.getElementById('state').textContent.startsWith('finished')", timeout=300_000)
    if page.inner_text("#state").startswith("running"):  # the live curve grows as train writes its steps
        page.wait_for_function("Number((document.querySelector('#loss polyline') || {dataset: {points: 0}}).dataset"
                               ".points) >= 3 || !document.getElementById('state').textContent.startsWith('running')",
                               timeout=120_000)
        screenshot(page, "running")
    assert page.inner_text("#log").strip(), "the log's tail is shown"
    assert not page.errors


PAGES = {"builds": "/", "build": "/builds/smoke", "compare": "/compare?a=smoke&b=smoke-b", "chat": "/chat",
         "running-list": "/running", "review-list": "/review"}


@pytest.mark.parametrize("name", sorted(PAGES))
def test_every_page_opens_without_console_errors(smoke, studio, page, name):
    smoke.finish()
    response = page.goto(studio + PAGES[name])
    assert response.status == 200, page.content()[:2000]
    page.wait_for_load_state("networkidle")
    assert not page.errors, page.errors
    screenshot(page, name)


def test_the_builds_table_sorts_and_filters(smoke, studio, page):
    smoke.finish()
    page.goto(studio + "/?sort=tag&order=asc")
    tags = lambda: page.eval_on_selector_all("#builds tbody tr", "rows => rows.map(r => r.dataset.tag)")  # noqa: E731
    assert tags() == ["smoke", "smoke-b", "smoke-damaged", "smoke-rag"]
    page.click("a[data-sort=tag]")  # the same column again: descending
    assert tags() == ["smoke-rag", "smoke-damaged", "smoke-b", "smoke"]
    page.fill("#q", "smoke-b")
    page.click("#filter button")
    assert tags() == ["smoke-b"]
    page.select_option("#status-filter", "damaged")
    page.fill("#q", "")
    page.click("#filter button")
    assert tags() == ["smoke-damaged"]
    assert not page.errors


def test_compare_shows_the_known_difference(smoke, studio, page):
    smoke.finish()
    page.goto(studio + "/")
    page.goto(studio + "/compare")
    page.select_option("#a", "smoke")
    page.select_option("#b", "smoke-b")
    page.click("#compare-form button")
    diff = page.inner_text("#spec-diff")
    assert "train.max_steps" in diff and "12" in diff and "4" in diff
    lengths = page.eval_on_selector_all("svg.loss polyline", "ls => ls.map(l => l.dataset.name + ':' + l.dataset.points)")
    assert sorted(lengths) == ["smoke-b:4", "smoke:12"]  # logging_every 1: one point per step
    assert page.inner_text("#headline") and page.inner_text("#diff-summary")
    assert not page.errors


def test_a_chat_streams_an_answer_into_the_page(smoke, studio, page):
    smoke.finish()
    page.goto(studio + "/chat")
    page.select_option("#model-a", "smoke")
    page.select_option("#model-b", "smoke-b")
    page.fill("#temperature", "1")  # the tiny model's greedy answer is blank; sampled, it is random tokens
    page.click("#send")
    page.wait_for_function("document.getElementById('answer-a').dataset.done === '1' && "
                           "document.getElementById('answer-b').dataset.done === '1'", timeout=180_000)
    assert page.inner_text("#answer-a").strip() and page.inner_text("#answer-b").strip()
    assert int(page.get_attribute("#answer-a", "data-chunks")) > 1  # streamed: several deltas, not one reply
    assert page.inner_text("#chat-status") == "done"
    assert not page.errors


def _ask(page) -> None:
    page.fill("#temperature", "1")  # the tiny model's greedy answer is blank; sampled, it is random tokens
    page.click("#send")
    page.wait_for_function("document.getElementById('chat-status').textContent === 'done'", timeout=180_000)
    for side in "ab":
        assert page.get_attribute(f"#answer-{side}", "data-done") == "1", page.inner_text(f"#answer-{side}")


def test_base_beside_a_build_streams_into_the_page(smoke, studio, page):
    smoke.finish()
    page.goto(studio + "/chat")
    page.select_option("#model-a", "base")
    page.select_option("#model-b", "smoke")
    assert page.is_hidden("#retrieval-switch")  # neither build has an index
    _ask(page)
    assert page.inner_text("#label-a") == "base (asked as smoke)" and page.inner_text("#label-b") == "smoke"
    assert page.inner_text("#answer-a").strip() and int(page.get_attribute("#answer-a", "data-chunks")) > 1
    assert page.is_hidden("#sources-a") and page.is_hidden("#sources-b")
    log = (smoke.root / "studio.log").read_text()
    assert "/v1/chat/completions model=base status=200" in log  # serve answered it as its base model
    page.select_option("#model-b", "")  # base alone: asked as the promoted build, else the first listed
    page.click("#send")
    page.wait_for_function("document.getElementById('chat-status').textContent === 'done'", timeout=180_000)
    assert page.inner_text("#label-a") == f"base (asked as {page.get_attribute('#chat-form', 'data-base-of')})"
    assert page.get_attribute("#answer-a", "data-done") == "1" and page.is_hidden("#side-b")
    assert not page.errors


def test_retrieval_on_shows_the_cited_passages(smoke, studio, page):
    smoke.finish()
    page.goto(studio + "/chat")
    page.select_option("#model-a", "smoke-rag")
    page.select_option("#model-b", "base")  # base + retrieval: asked as smoke-rag is, with its index
    assert page.is_visible("#retrieval-switch") and page.is_checked("#retrieval")  # the spec's default: on
    _ask(page)
    assert page.inner_text("#label-a") == "smoke-rag · retrieval on"
    assert page.inner_text("#label-b") == "base (asked as smoke-rag) · retrieval on"
    for side in "ab":
        cited = page.eval_on_selector_all(f"#sources-{side} li", "items => items.map(i => i.textContent)")
        assert 1 <= len(cited) <= 2 and all(c.startswith(f"[{n}] data/raw/") for n, c in enumerate(cited, 1)), cited
        assert all(re.search(r"\(\S+#p\d+", c) for c in cited), cited  # the paragraph ids of each passage
    screenshot(page, "chat")
    page.uncheck("#retrieval")
    _ask(page)
    assert page.inner_text("#label-a") == "smoke-rag · retrieval off"
    assert page.is_hidden("#sources-a") and page.is_hidden("#sources-b")
    assert not page.errors


def test_a_damaged_build_is_shown_as_damaged(smoke, studio, page):
    smoke.finish()
    response = page.goto(studio + "/builds/smoke-damaged")
    assert response.status == 409
    assert page.inner_text("#damaged") == "damaged"
    assert "metrics.json" in page.content() and "Questions" not in page.content()
    screenshot(page, "damaged")
    page.goto(studio + "/?q=smoke-damaged")
    assert "damaged" in page.inner_text("#builds tbody")
    response = page.goto(studio + "/builds/smoke-damaged/files/report/metrics.json")
    assert response.status == 409


def test_promote_goes_through_the_registry_and_refuses_a_foreign_form(smoke, studio, page):
    smoke.finish()
    forged = urllib.request.Request(f"{studio}/builds/smoke-b/promote", data=b"csrf=guess", method="POST")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(forged, timeout=10)
    page.goto(studio + "/")
    page.click("tr[data-tag=smoke-b] form button")
    page.wait_for_load_state()
    assert "current" in page.inner_text("tr[data-tag=smoke-b]")
    assert state(f"{studio}/running/smoke/state")["status"] == "passed"
    assert not page.errors


def test_a_draft_decision_saved_in_the_page_is_in_the_file_the_cli_reads(smoke, studio, page):
    suite = smoke.root / "mine-suite.yaml"
    page.goto(studio + "/review")
    page.click("a[href='/review/mine']")
    first = page.locator("form.draft[data-id=a-01]")
    assert "A colony raises new queens in swarm cells" in first.inner_text()  # its paragraph, parsed by curate
    screenshot(page, "review")
    first.locator("textarea[name=question]").fill("What raises swarm cells?")
    first.locator("input[name=concepts]").fill("queen|queen cell, swarm")
    first.locator("button[value=edit]").click()
    page.wait_for_selector("form.draft[data-id=a-01]", state="detached")
    page.locator("form.draft[data-id=abstain-01] button[value=drop]").click()
    page.wait_for_selector("form.draft[data-id=abstain-01]", state="detached")
    assert page.eval_on_selector_all("form.draft", "forms => forms.map(f => f.dataset.id)") == ["a-02"]
    assert "1 draft, 2 reviewed" in page.inner_text("#counts")
    questions = {q.id: q for q in load_suite(suite).questions}
    assert sorted(questions) == ["a-01", "a-02", "hand-01"]
    assert questions["a-01"].question == "What raises swarm cells?" and questions["a-01"].status == "reviewed"
    assert [(c.name, c.synonyms) for c in questions["a-01"].concepts] == [("queen", ("queen cell",)), ("swarm", ())]
    said = []  # the terminal review (`make review`) on the same file: one draft left, a-02; quit at it
    assert review.run(suite, {}, ask=lambda _: "q", say=said.append) == {"questions": 3, "draft": 1, "reviewed": 2}
    assert "[1/1] a-02" in "\n".join(said)
    assert not page.errors
