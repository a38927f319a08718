"""The tests' browser: Debian's Chromium driven by Playwright (no browser download), and a
guard that fails a test on any request to a host that is not loopback — pages, API docs
and rendered documents must load only what the package ships."""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Route, sync_playwright

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
LOCAL_SCHEMES = ("data", "blob", "about", "chrome", "chrome-extension")


@contextmanager
def chromium() -> Iterator[Browser]:
    path = shutil.which("chromium")
    assert path, "Debian's chromium is installed by scripts/install.sh"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def is_loopback_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OffsiteRequests:
    """Every request a context made to a non-loopback host (each is aborted)."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def watch(self, context: BrowserContext) -> None:
        def route(r: Route) -> None:
            if is_loopback_url(r.request.url):
                r.continue_()
            else:
                self.urls.append(r.request.url)
                r.abort()

        context.route("**/*", route)

    def assert_none(self) -> None:
        assert not self.urls, f"requests left this machine: {self.urls}"


@contextmanager
def offline_context(browser: Browser, **options: object) -> Iterator[BrowserContext]:
    """A browser context whose test fails if any page in it asks a non-loopback host."""
    guard = OffsiteRequests()
    context = browser.new_context(**options)  # type: ignore[arg-type]
    guard.watch(context)
    try:
        yield context
    finally:
        context.close()
    guard.assert_none()
