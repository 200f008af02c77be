"""The chat page (scripts/web/chat.html) in headless Chromium, against a running server on the shipped base and
adapters: its menu lists GET /v1/models; a typed question streams the reply the API gives greedily for it;
switching adapters mid-conversation answers the whole conversation with the other adapter; the compare view shows
each model's greedy API reply side by side. Skipped where Chromium, chromedriver or selenium is missing."""
import shutil

import pytest

pytest.importorskip("selenium", reason="selenium is not installed (pip install -r requirements-dev.txt)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("Chromium or chromedriver is not installed (Debian: apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from test_serve import MODELS, client, running_server, shipped_dir  # noqa: E402,F401 (shipped_dir: a fixture)

MAX_TOKENS = 40


@pytest.fixture(scope="module")
def server(shipped_dir):
    with running_server(shipped_dir, "--gather_ms", "50") as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1000,760"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)  # the local driver: nothing is downloaded
    yield driver
    driver.quit()


def open_page(browser, url: str) -> None:
    """Load the page from the server, wait for its model menu, and ask for short greedy replies."""
    browser.get(url.removesuffix("/v1") + "/")
    WebDriverWait(browser, 30).until(lambda d: len(Select(d.find_element(By.ID, "model")).options) == len(MODELS))
    assert [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "model")).options] == MODELS
    assert browser.find_element(By.ID, "temperature").get_attribute("value") == "0"  # greedy unless changed
    field = browser.find_element(By.ID, "max_tokens")
    field.clear()
    field.send_keys(str(MAX_TOKENS))


def finished(browser, css: str) -> list[tuple[str, str]]:
    """(text, finish reason) of every reply element matching css, once all of them have finished."""
    script = ("return [...document.querySelectorAll(arguments[0])].map(e => [e.textContent, e.dataset.finish])")
    WebDriverWait(browser, 120).until(lambda d: all(finish for _, finish in d.execute_script(script, css)))
    return [tuple(pair) for pair in browser.execute_script(script, css)]


def api_reply(url: str, model: str, messages: list[dict]) -> tuple[str, str]:
    out = client(url).chat.completions.create(model=model, messages=messages, max_tokens=MAX_TOKENS, temperature=0)
    return out.choices[0].message.content, out.choices[0].finish_reason


def test_typed_questions_stream_the_api_reply_and_switching_adapters_keeps_the_conversation(server, browser):
    open_page(browser, server)
    browser.execute_script("window.updates = 0; new MutationObserver(() => window.updates++).observe("
                           "document.getElementById('log'), {subtree: true, childList: true, characterData: true})")
    messages = []
    for model, question in (("lora_identity", "Who are you?"), ("lora_medical", "头痛应该怎么办？")):
        Select(browser.find_element(By.ID, "model")).select_by_value(model)
        browser.find_element(By.ID, "question").send_keys(question)
        browser.find_element(By.ID, "send").click()
        messages.append({"role": "user", "content": question})
        text, finish = finished(browser, ".turn.assistant .text")[-1]
        assert (text, finish) == api_reply(server, model, messages)  # the whole conversation, this adapter
        messages.append({"role": "assistant", "content": text})
    assert browser.execute_script("return window.updates") > 10  # replies arrived piece by piece


def test_compare_shows_every_models_reply_side_by_side(server, browser, tmp_path):
    open_page(browser, server)
    question = "I have a sore throat. What should I do?"  # each model answers it in its own way
    browser.find_element(By.ID, "question").send_keys(question)
    browser.find_element(By.ID, "compare").click()
    replies = finished(browser, "#compare-grid .column .text")
    columns = browser.execute_script("return [...document.querySelectorAll('#compare-grid .column')]"
                                     ".map(c => c.dataset.model)")
    assert columns == MODELS
    for model, reply in zip(columns, replies):
        assert reply == api_reply(server, model, [{"role": "user", "content": question}]), model
    assert len({text for text, _ in replies}) == len(MODELS)  # each model answers in its own way
    shot = tmp_path / "compare.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
