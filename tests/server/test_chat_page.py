"""The chat page at `/` in a real browser: Debian's chromium driven by Playwright for Python types a
message and sees the reply stream in (several updates), equal to the same request through the API; the
stop button ends a long reply and frees its row."""
import os
import shutil
import time
from pathlib import Path

import openai
import pytest

from test_server import Server, wait_idle

from playwright import sync_api  # noqa: E402  (requirements.txt; scripts/setup.sh installs chromium)

CHROMIUM = os.environ.get("MLXGP_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
assert Path(CHROMIUM).exists(), f"Debian's chromium is missing at {CHROMIUM}: run scripts/setup.sh"

# Counts the assistant bubble's text updates while it streams.
WATCH = """() => {
  window.__updates = 0;
  new MutationObserver((records) => {
    for (const r of records)
      if (r.target.nodeType === 3 ? r.target.parentElement.classList.contains('assistant')
                                  : r.target.classList && r.target.classList.contains('assistant')) window.__updates++;
  }).observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def served():
    s = Server()
    yield s
    assert s.stop() == 0, "".join(s.log)


@pytest.fixture(scope="module")
def page(served):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        yield page
        browser.close()


def test_page_is_self_contained(served, page):
    page.goto(served.url("/"))
    assert page.title() == "mlxgp chat"
    # No external resources: no src/href attribute pointing anywhere.
    assert page.evaluate("() => [...document.querySelectorAll('[src],[href]')].length") == 0
    page.wait_for_function("() => document.getElementById('model').textContent.length > 0")
    assert page.text_content("#model") == served.model


def test_typed_message_streams_a_reply(served, page):
    question, max_tokens = "Name three fruits.", 40
    page.goto(served.url("/"))
    page.click("summary")
    page.fill("#temperature", "0")
    page.fill("#max_tokens", str(max_tokens))
    page.evaluate(WATCH)
    page.fill("#input", question)
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.user")
    assert page.text_content(".msg.user") == question
    page.wait_for_function("() => document.querySelector('.msg.assistant')?.dataset.finish", timeout=120_000)
    reply = page.text_content(".msg.assistant")
    assert page.get_attribute(".msg.assistant", "data-finish") in ("stop", "length")
    assert page.evaluate("window.__updates") >= 2, "the reply did not stream"
    client = openai.OpenAI(base_url=served.url("/v1"), api_key="unused", max_retries=0, timeout=300)
    ref = client.chat.completions.create(model=served.model, messages=[{"role": "user", "content": question}],
                                         temperature=0, max_tokens=max_tokens)
    assert reply == ref.choices[0].message.content
    assert not page.is_disabled("#send") and page.is_disabled("#stop")


def test_stop_button_ends_the_reply(served, page):
    page.goto(served.url("/"))
    page.click("summary")
    page.fill("#temperature", "1.5")
    page.fill("#seed", "1")
    page.fill("#max_tokens", "4000")
    page.fill("#input", "Write a very long story about the sea.")
    page.click("#send")
    page.wait_for_function("() => (document.querySelector('.msg.assistant')?.textContent || '').length > 0",
                           timeout=120_000)
    if page.get_attribute(".msg.assistant", "data-finish") is None:  # still streaming
        page.click("#stop")
        page.wait_for_function("() => document.querySelector('.msg.assistant').dataset.finish")
        assert page.get_attribute(".msg.assistant", "data-finish") in ("stopped", "stop", "length")
    assert wait_idle(served, key=None), "the stopped reply kept its row"
    assert not page.is_disabled("#send")
