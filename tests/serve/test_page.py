"""The demo page at ``/`` in a real headless browser: Debian's chromium driven by Playwright,
against a real uvicorn server that serves a tiny model of the planted-association corpus
(:mod:`tests.serve.service_data`: after ``A`` the model recommends ``B``, because of ``A``).

Playwright's own browser download does not work offline, so the test launches the system's
chromium and skips, saying so, where there is none.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, Error, Page, expect, sync_playwright

from seqrec.io import registry
from seqrec.serve import online
from seqrec.serve.api import create_app
from tests.serve import service_data as sd

pytestmark = pytest.mark.slow  # training, a server and a browser: a minute and more on 2 cores

NAME = "page-test"
NO_CHROMIUM = "no chromium: install Debian's chromium package (make browser)"
WAIT_MS = 15_000  # longest wait for the page to show an answer (2 busy cores)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium()
    if path is None:
        pytest.skip(NO_CHROMIUM)
    with sync_playwright() as p:
        try:
            launched = p.chromium.launch(executable_path=path, args=["--no-sandbox"], headless=True)
        except Error as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            pytest.skip(f"{NO_CHROMIUM}; {path} did not start: {first}")
        yield launched
        launched.close()


def _serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    """``app`` on uvicorn in a background thread, on a loopback port bound here first (so no
    other process can take it in between); returns the server, its thread and its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        server.should_exit = True
        raise RuntimeError("the service did not start (its log above says why)")
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("page")
    sd.write_build(root / "data", "b1", sd.corpus())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        registry.configure("test-page")
        sd.make_champion(NAME, sd.register(sd.train_model(root / "model", seed=0), NAME))
        settings = online.Settings(data=str(root / "data"), model_name=NAME, poll_seconds=60)
        server, thread, url = _serve(create_app(lambda: online.Service(settings)))
        try:
            yield url
        finally:
            server.should_exit = True
            thread.join(timeout=30)


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A fresh page on ``/``; afterwards, it must have asked nothing of any other address and
    raised no JavaScript error."""
    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context()
    opened = context.new_page()
    elsewhere: list[str] = []
    script_errors: list[str] = []
    opened.on(
        "request",
        lambda r: None if r.url.startswith(base_url + "/") else elsewhere.append(r.url),
    )
    opened.on("pageerror", lambda error: script_errors.append(str(error)))
    opened.goto(base_url + "/")
    # The page starts in an anonymous session and shows the popular items for it.
    expect(opened.locator("#answer[data-clicks='0'] [data-testid=rec]").first).to_be_visible()
    yield opened
    context.close()
    assert elsewhere == [], "the page must work offline: it asked other addresses"
    assert script_errors == []


def find_and_click(page: Page, item: int) -> None:
    """Search for the item's id and click its card."""
    page.fill("#q", sd.item_id(item))
    page.press("#q", "Enter")
    page.click(f"#items[data-q='{sd.item_id(item)}'] [data-item-id='{sd.item_id(item)}']")


def recommended(page: Page) -> list[str]:
    return page.locator("[data-testid=rec]").evaluate_all(
        "nodes => nodes.map(n => n.dataset.itemId)"
    )


def test_picking_a_demo_user_then_clicking_a_product_changes_their_recommendations(
    page: Page,
) -> None:
    users = page.locator("#user option").evaluate_all("nodes => nodes.map(n => n.value)")
    assert users == ["", *[f"u{u}" for u in range(20)]]
    page.select_option("#user", "u1")
    answer = page.locator("#answer[data-user='u1'][data-clicks='0']")
    expect(answer).to_be_visible()
    expect(page.locator("#known")).to_have_text("u1 (in the build)")
    before = recommended(page)
    assert len(before) == 10

    find_and_click(page, sd.A)
    expect(page.locator("#answer[data-user='u1'][data-clicks='1']")).to_be_visible()
    expect(page.locator("[data-testid=click]")).to_have_count(1)
    expect(page.locator("[data-testid=click]")).to_contain_text("Product 5")
    after = recommended(page)
    assert after != before and sd.item_id(sd.A) not in after  # seen items are left out
    assert page.locator("#source").inner_text() == "model"

    # A recommended item is a product to click too: it is viewed, and leaves the list.
    first = page.locator("[data-testid=rec-title]").first
    title = first.inner_text()
    first.click()
    expect(page.locator("#answer[data-user='u1'][data-clicks='2']")).to_be_visible()
    expect(page.locator("[data-testid=click]").first).to_contain_text(title)
    assert after[0] not in recommended(page)


def test_an_anonymous_session_that_viewed_a_is_recommended_b_because_of_a(page: Page) -> None:
    page.select_option("#user", "u2")
    expect(page.locator("#answer[data-user='u2']")).to_be_visible()
    page.click("#anonymous")
    expect(page.locator("#session-label")).to_contain_text("Anonymous session")
    for item in (10, 12, sd.A):
        find_and_click(page, item)
    answer = page.locator("#answer[data-user=''][data-clicks='3']")
    expect(answer).to_be_visible()

    clicks = page.locator("[data-testid=click]")
    assert clicks.evaluate_all("nodes => nodes.map(n => n.dataset.itemId)") == ["p5", "p12", "p10"]
    top = page.locator("[data-testid=rec]").first
    assert top.get_attribute("data-item-id") == sd.item_id(sd.B)
    assert top.locator("[data-testid=rec-rank]").inner_text() == "1"
    assert top.locator("[data-testid=rec-title]").inner_text() == f"Product {sd.B}"
    assert top.locator("[data-testid=rec-score]").inner_text().startswith("score ")
    assert (
        top.locator("[data-testid=because]")
        .inner_text()
        .startswith(f"because you viewed Product {sd.A}")
    )
    assert not {"p10", "p12", "p5"} & set(recommended(page))

    assert page.locator("#source").inner_text() == "model"
    assert page.locator("#model").inner_text() == f"{NAME} v1"
    expect(page.locator("#status")).to_have_attribute("data-status", "ready")
    expect(page.locator("#status")).to_contain_text(f"model {NAME} v1")
    assert page.locator("#known").inner_text() == "anonymous"
    assert page.locator("#server-ms").inner_text().endswith(" ms")
    interests = page.locator("[data-testid=interest]")
    assert interests.count() == 3
    categories = interests.evaluate_all("nodes => nodes.map(n => n.dataset.category)")
    assert set(categories) <= set(sd.CATEGORIES)
    assert all(text.strip().endswith("%") for text in interests.all_inner_texts())
    assert page.locator("#intent").inner_text().endswith("%")
    assert page.locator("#errors").is_hidden()


def test_an_error_answer_is_shown_until_the_same_request_succeeds(page: Page) -> None:
    errors = page.locator("#errors")
    assert errors.is_hidden()
    page.fill("#q", "x" * 201)  # the API takes at most 200 characters: a 422
    page.press("#q", "Enter")
    expect(errors).to_be_visible()
    expect(errors).to_contain_text("Products: 422 the request is not valid: query.q")
    expect(errors).to_contain_text("at most 200 characters")

    page.fill("#q", "")
    page.press("#q", "Enter")
    expect(errors).to_be_hidden()

    # The service goes away: a click says so, and the previous answer stays on the page.
    page.route("**/v1/recommendations", lambda route: route.abort())
    page.locator("[data-testid=item]").first.click()
    expect(errors).to_contain_text("Recommendations: the service cannot be reached")
    expect(page.locator("#answer[data-clicks='0'] [data-testid=rec]").first).to_be_visible()
