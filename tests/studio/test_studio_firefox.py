"""The studio in stock Firefox (Debian's firefox-esr, driven through WebDriver BiDi: tests/studio/firefox.py), on the
same smoke store as the Chromium tests: every page opens without console errors, and the chat streams answers
(base beside a build; retrieval on, with its cited passages) through the page's own script. Its name sorts it after
test_studio.py, whose first test needs the shared smoke build still running (these wait for it to finish)."""

from __future__ import annotations

import json
import shutil
import urllib.request

import pytest

from tests.conftest import free_port
from tests.studio.firefox import Firefox
from tests.studio.test_studio import PAGES

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def firefox():
    binary = shutil.which("firefox-esr") or shutil.which("firefox")
    if binary is None:
        pytest.skip("Debian's firefox-esr is not installed (apt-get install -y firefox-esr; .ci/run installs it)")
    browser = Firefox(binary, free_port())
    yield browser
    browser.close()


@pytest.mark.parametrize("name", sorted(PAGES))
def test_every_page_opens_in_firefox_without_console_errors(smoke, studio, firefox, name):
    smoke.finish()
    assert urllib.request.urlopen(studio + PAGES[name], timeout=30).status == 200
    firefox.errors.clear()
    firefox.goto(studio + PAGES[name])
    assert firefox.js("document.querySelector('main, body').textContent.trim().length") > 0
    assert firefox.js("document.styleSheets.length") >= 1  # the vendored stylesheet loaded, no network needed
    assert not firefox.errors, firefox.errors


def _choose(firefox: Firefox, a: str, b: str) -> None:
    for side, model in (("a", a), ("b", b)):
        firefox.js(f"(() => {{ const s = document.getElementById('model-{side}'); s.value = {json.dumps(model)}; "
                   f"s.dispatchEvent(new Event('change', {{bubbles: true}})); }})()")


def _ask(firefox: Firefox) -> None:
    # the tiny model's greedy answer is blank; sampled, it is random tokens
    firefox.js("(() => { const t = document.getElementById('temperature'); t.value = '1'; "
               "t.dispatchEvent(new Event('input', {bubbles: true})); document.getElementById('send').click(); })()")
    assert firefox.wait_for("document.getElementById('chat-status').textContent === 'done'", 180), \
        firefox.js("document.getElementById('chat-status').textContent")


def test_base_beside_a_build_streams_in_firefox(smoke, studio, firefox):
    smoke.finish()
    firefox.errors.clear()
    firefox.goto(studio + "/chat")
    _choose(firefox, "base", "smoke")
    assert firefox.js("document.getElementById('retrieval-switch').hidden")  # neither has an index
    _ask(firefox)
    assert firefox.js("document.getElementById('label-a').textContent") == "base (asked as smoke)"
    for side in "ab":
        assert firefox.js(f"document.getElementById('answer-{side}').dataset.done") == "1"
        assert firefox.js(f"document.getElementById('answer-{side}').textContent.trim().length") > 0
        assert int(firefox.js(f"document.getElementById('answer-{side}').dataset.chunks")) > 1  # streamed
    assert not firefox.errors, firefox.errors


def test_retrieval_on_shows_the_cited_passages_in_firefox(smoke, studio, firefox):
    smoke.finish()
    firefox.errors.clear()
    firefox.goto(studio + "/chat")
    _choose(firefox, "smoke-rag", "")
    assert not firefox.js("document.getElementById('retrieval-switch').hidden")
    assert firefox.js("document.getElementById('retrieval').checked")  # the spec's default: on
    _ask(firefox)
    cited = firefox.js("Array.from(document.querySelectorAll('#sources-a li')).map(li => li.textContent)")
    assert 1 <= len(cited) <= 2 and all(c.startswith(f"[{n}] data/raw/") for n, c in enumerate(cited, 1)), cited
    assert firefox.js("document.getElementById('side-b').hidden")
    assert not firefox.errors, firefox.errors
