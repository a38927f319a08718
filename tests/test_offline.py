"""Nothing from the internet at run time: the IDE, the API documentation and rendered
documents load only what the package ships. Each page is opened in Chromium with every
non-loopback request aborted and recorded; any such request fails the test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect

from browser import chromium, offline_context
from conftest import HubProcess


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def test_api_docs_work_offline(shared_hub: HubProcess, browser: Browser) -> None:
    r = httpx.get(f"{shared_hub.url}/api/docs")
    assert r.status_code == 200
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "cdn" not in r.text.lower()
    assert httpx.get(f"{shared_hub.url}/api/docs/assets/nope.js").status_code == 404
    with offline_context(browser) as ctx:
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{shared_hub.url}/api/docs")
        # Swagger UI ran (under the hub's CSP) and read the hub's own OpenAPI document.
        expect(page.get_by_text("/api/health").first).to_be_visible(timeout=15_000)
        expect(page.locator(".info .title").first).to_contain_text("rsparkhub")
        assert not errors, errors


def test_the_ide_loads_nothing_from_elsewhere(shared_hub: HubProcess, browser: Browser) -> None:
    with offline_context(browser) as ctx:
        page = ctx.new_page()
        page.goto(shared_hub.url)
        expect(page.locator("input[type=password]").first).to_be_visible(timeout=15_000)
        page.wait_for_load_state("networkidle")
