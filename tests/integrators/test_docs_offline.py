"""`/docs` works air-gapped: headless Chromium loads each service's Swagger UI (and ReDoc) with
every request to another host refused, and sees the operations listed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fixtures.integrators import Stack, chromium_executable
from playwright.sync_api import Browser, Page, Route, sync_playwright

# Chromium as this machine runs it headless (as root, no GPU, no background services of its own
# that would try the network: their refusals are noise, not what the test looks at).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# ReDoc's sidebar footer shows Redocly's logo from their CDN; the <img> hides itself when that
# fails. Decorative, so allowed to fail here; anything else off this host fails the test.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
RENDER_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_executable(), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


class Offline:
    """A page whose requests may reach only the service's own host; the rest are refused and
    recorded."""

    def __init__(self, browser: Browser, origin: str) -> None:
        self.origin = origin
        self.refused: list[str] = []
        self.context = browser.new_context()
        self.context.route("**/*", self._route)
        self.page: Page = self.context.new_page()

    def _route(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(self.origin + "/"):
            route.continue_()
        else:
            self.refused.append(url)
            route.abort("internetdisconnected")

    def close(self) -> None:
        self.context.close()


def _service_url(stack: Stack, service: str) -> str:
    return stack.provider_url if service == "provider" else stack.settlement_url


@pytest.mark.parametrize("service", ["provider", "settlement"])
def test_swagger_ui_lists_every_operation_without_the_internet(
    browser: Browser, stack: Stack, documents: dict[str, dict[str, Any]], service: str
) -> None:
    url = _service_url(stack, service)
    offline = Offline(browser, url)
    try:
        offline.page.goto(f"{url}/docs")
        offline.page.wait_for_selector(".opblock", timeout=RENDER_TIMEOUT_MS)
        shown = offline.page.locator(".opblock .opblock-summary-operation-id").all_inner_texts()
        title = offline.page.locator(".info .title").inner_text()
    finally:
        offline.close()
    expected = [
        op["operationId"] for item in documents[service]["paths"].values() for op in item.values()
    ]
    assert sorted(shown) == sorted(expected)
    assert documents[service]["info"]["title"] in title
    assert offline.refused == []  # everything came from the service itself


@pytest.mark.parametrize("service", ["provider", "settlement"])
def test_redoc_renders_every_operation_without_the_internet(
    browser: Browser, stack: Stack, documents: dict[str, dict[str, Any]], service: str
) -> None:
    url = _service_url(stack, service)
    offline = Offline(browser, url)
    try:
        offline.page.goto(f"{url}/redoc")
        offline.page.wait_for_selector("[data-section-id^='operation/']", timeout=RENDER_TIMEOUT_MS)
        sections = offline.page.locator("[data-section-id^='operation/']").count()
    finally:
        offline.close()
    operations = sum(len(item) for item in documents[service]["paths"].values())
    assert sections >= operations
    assert set(offline.refused) <= {REDOC_LOGO}
