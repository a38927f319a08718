"""The minimal web page in a real headless Chromium (Debian's, driven by Playwright):
the one-time login link, creating a workspace, and a console round trip."""

from __future__ import annotations

import re
import shutil

from playwright.sync_api import expect, sync_playwright

from conftest import HubProcess

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def test_login_link_workspace_and_console(hub: HubProcess) -> None:
    link = re.search(r"(http://\S+/login/rso_\S+)", hub.first_start_output)
    assert link, hub.first_start_output
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is installed by scripts/install.sh"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(link.group(1))
            expect(page.locator("#me")).to_have_text("admin")
            page.fill("#new-ws input[name=name]", "browser-ws")
            page.click("#new-ws button")
            page.click("text=default / browser-ws")
            expect(page.locator("#ws-title")).to_have_text("browser-ws")
            page.fill("#code", "1 + 1")
            page.press("#code", "Control+Enter")
            expect(page.locator("#out")).to_contain_text("[1] 2", timeout=30_000)
            page.select_option("#lang", "python")
            page.fill("#code", "print('from python')")
            page.click("#run")
            expect(page.locator("#out")).to_contain_text("from python", timeout=30_000)
            # The link works once only.
            second = browser.new_page()
            resp = second.goto(link.group(1))
            assert resp is not None and resp.status == 401
            # The secret is printed once (on first start) and never in the access log.
            log = hub.log_path.read_text()
            assert log.count(link.group(1).rsplit("/", 1)[1]) == 1
            assert "/login/<redacted>" in log
        finally:
            browser.close()
