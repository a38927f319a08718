"""Page helpers of the browser tests of the web IDE (Playwright on Debian's Chromium, a real
hub): log in, open a workspace and wait for its session, open a file, type and run in the
console, read the console's (virtualised) output, make workspaces and files over REST.
Used by tests/test_web_ide.py and the other tests/test_web_*.py modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Locator, Page, expect

from browser import chromium, offline_context
from conftest import PASSWORD, HubProcess

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 720}

# milliseconds
T_SESSION = 90_000  # a session starting (agent + R kernel)
T_RUN = 90_000  # a script running, a document rendering
T_UI = 15_000  # the UI reacting (also REST calls into the session behind it)

expect.set_options(timeout=T_UI)


def new_page(browser: Browser) -> Page:
    ctx = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    ctx.set_default_timeout(T_UI)
    return ctx.new_page()


@contextmanager
def page_of(browser: Browser, viewport: dict[str, int] | None = None) -> Iterator[Page]:
    """A page in a browser context of its own (its own cookies), offline-guarded
    (tests/browser.py), failing the test on an uncaught script error."""
    errors: list[str] = []
    with offline_context(browser, viewport=viewport or VIEWPORT) as ctx:
        ctx.set_default_timeout(T_UI)
        page = ctx.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page
    assert not errors, errors


@contextmanager
def logged_in_page(hub: HubProcess, user: str) -> Iterator[Page]:
    """A module's one browser: a new user logged in, offline-guarded, no script errors."""
    hub.make_user(user)
    with chromium() as b, page_of(b) as page:
        log_in(page, hub, user)
        yield page


def log_in(page: Page, hub: HubProcess, name: str, password: str = PASSWORD) -> None:
    page.goto(hub.url + "/")
    page.get_by_test_id("login-name").fill(name)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("home")).to_be_visible()


def ensure_workspace(api: httpx.Client, name: str, example: str | None = None) -> str:
    """The id of the caller's workspace ``name`` (created, from ``example``, if missing)."""
    for w in api.get("/api/workspaces").json():
        if w["name"] == name and w["role"] == "owner":
            return str(w["id"])
    projects = api.get("/api/projects").json()
    if projects:
        pid = projects[0]["id"]
    else:
        pid = api.post("/api/projects", json={"name": "default"}).raise_for_status().json()["id"]
    body: dict[str, Any] = {"name": name, **({"example": example} if example else {})}
    r = api.post(f"/api/projects/{pid}/workspaces", json=body)
    r.raise_for_status()
    return str(r.json()["id"])


def shot(target: Page | Locator, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=str(SHOTS / name))


def upload(api: httpx.Client, ws: str, path: str, content: str) -> None:
    api.post(
        f"/api/workspaces/{ws}/upload", files={"files": (path, content.encode())}
    ).raise_for_status()


def hub_text(api: httpx.Client, ws: str, path: str) -> str:
    return str(api.get(f"/api/workspaces/{ws}/text/{path}").raise_for_status().json()["content"])


def open_ws(page: Page, hub: HubProcess, ws: str) -> None:
    """Show workspace ``ws``, connected, its session running."""
    page.bring_to_front()
    if not page.url.endswith(f"#/ws/{ws}"):
        page.goto(f"{hub.url}/#/ws/{ws}")
    expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "open", timeout=30_000
    )
    expect(page.get_by_test_id("session-status")).to_have_attribute(
        "data-state", "running", timeout=T_SESSION
    )


def file_item(page: Page, path: str) -> Locator:
    return page.locator(f'[data-testid=file-item][data-path="{path}"]')


def editor_tab(page: Page, path: str) -> Locator:
    return page.locator(f'[data-testid=editor-tab][data-path="{path}"]')


def editor_content(page: Page) -> Locator:
    """The visible editor's editable element (CodeMirror)."""
    return page.locator("[data-testid=editor] .editor-view:not([hidden]) .cm-content")


def editor_text(page: Page) -> str:
    return str(
        editor_content(page).evaluate(
            "el => [...el.querySelectorAll('.cm-line')].map(l => l.textContent).join('\\n')"
        )
    )


def open_file(page: Page, path: str) -> None:
    file_item(page, path).click()
    expect(editor_tab(page, path)).to_have_attribute("aria-selected", "true")
    expect(editor_content(page)).to_be_visible()


def type_at_end(page: Page, text: str) -> None:
    """Type ``text`` at the end of the visible editor's document."""
    editor_content(page).focus()
    page.keyboard.press("Control+End")
    page.keyboard.insert_text(text)


def console_run(page: Page, code: str) -> None:
    """Type ``code`` into the console input and press Enter (runs a complete statement)."""
    box = page.locator("[data-testid=console-input] .cm-content")
    box.click()
    page.keyboard.insert_text(code)
    page.keyboard.press("Enter")
    # sent: the input is empty again (CodeMirror shows its placeholder)
    expect(page.locator("[data-testid=console-input] .cm-placeholder")).to_be_visible()


def console_out(page: Page) -> Locator:
    return page.get_by_test_id("console-output")


def console_idle(page: Page, timeout: float = T_RUN) -> None:
    expect(page.get_by_test_id("session-status")).to_have_attribute(
        "data-busy", "false", timeout=timeout
    )


# The output is virtualised (only the lines near the visible area are in the DOM): scroll
# through it from the top and collect every rendered line, then follow the end again.
_COLLECT_JS = """
async (el) => {
  const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 0))));
  const seen = new Map();
  const grab = () => {
    for (const l of el.querySelectorAll('[data-testid=console-line]')) {
      const img = l.querySelector('img');
      seen.set(Number(l.dataset.line), {stream: l.dataset.stream, text: l.textContent, src: img ? img.getAttribute('src') : null});
    }
  };
  el.scrollTop = 0;
  await frame();
  for (let i = 0; i < 20000; i++) {
    grab();
    if (el.scrollTop + el.clientHeight >= el.scrollHeight - 1) break;
    el.scrollTop = el.scrollTop + Math.max(40, el.clientHeight - 40);
    await frame();
  }
  el.scrollTop = el.scrollHeight;
  await frame();
  return {
    total: Number(el.dataset.totalLines),
    dropped: Number(el.dataset.droppedLines),
    lines: [...seen.entries()].sort((a, b) => a[0] - b[0]).map(([n, v]) => ({n, ...v})),
  };
}
"""


def console_lines(page: Page) -> list[dict[str, Any]]:
    """Every line of the console (stream, text, src of a plot's image), in order."""
    got = console_out(page).evaluate(_COLLECT_JS)
    lines: list[dict[str, Any]] = got["lines"]
    assert got["dropped"] == 0
    numbers = [ln["n"] for ln in lines]
    assert numbers == list(range(got["total"])), f"collected {len(numbers)} of {got['total']}"
    return lines
