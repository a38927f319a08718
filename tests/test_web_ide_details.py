"""The IDE's small things, end to end in Debian's Chromium (Playwright, offline-guarded) on
a real hub with real R and Python kernels (issue #10, "Small things that hurt"):

* a session that starts without its PostgreSQL database and Spark keeps saying so in the
  console once it is ready (the hub's start messages; the hub here has no PostgreSQL
  binaries where it is told to look, and cannot make Spark's session ids);
* Restart names the language, asks first when someone else is attached, and says when the
  kernel is ready again — in every attached browser;
* the command palette (F1, Ctrl+Shift+P) lists the commands with their keys and runs one;
  Ctrl+Shift+S on a file in the Files pane sources that file;
* the Environment pane at a 1440 px window: names whole, the size column shown; it follows
  the console's language unless pinned; no "no session" while the session starts;
* a render's log is plain text, without pandoc's command line;
* the New file dialog shows the hub's precise message for bad names and existing files;
  an upload over the file limit (RSPARKHUB_MAX_FILE_BYTES) is refused in the page, in MB,
  before anything is sent.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from browser import chromium
from conftest import HubProcess
from eventually import eventually_sync
from ide import (
    T_RUN,
    T_SESSION,
    console_idle,
    console_lines,
    console_out,
    console_run,
    ensure_workspace,
    file_item,
    log_in,
    open_file,
    open_ws,
    page_of,
    shot,
    upload,
)

pytestmark = pytest.mark.skipif(shutil.which("R") is None, reason="R is not installed")

MAX_FILE_BYTES = 1024 * 1024  # 1 MB
WIDE = {"width": 1440, "height": 900}
NO_DATABASE = "No PostgreSQL database in this session"
NO_SPARK = "No Spark in this session"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    root = tmp_path_factory.mktemp("details")
    empty = root / "no-postgres"
    empty.mkdir()
    data = root / "data"
    data.mkdir()
    (data / "spark").write_text("not a directory\n")  # Spark's session ids cannot be made
    hub = HubProcess(
        data,
        {
            "RSPARKHUB_MAX_FILE_BYTES": str(MAX_FILE_BYTES),
            "RSPARKHUB_USER_DATABASES": "embedded",
            "RSPARKHUB_USER_DATABASES_BINDIR": str(empty),
            "RSPARKHUB_SPARK": "external",
            "RSPARKHUB_SPARK_REMOTE_URL": "sc://127.0.0.1:9",
        },
    ).start()
    try:
        yield hub
    finally:
        hub.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def api(hub: HubProcess) -> Iterator[httpx.Client]:
    with hub.client(hub.make_user("erin")) as c:
        yield c


@pytest.fixture
def page(browser: Browser, hub: HubProcess, api: httpx.Client) -> Iterator[Page]:
    with page_of(browser, WIDE) as p:
        log_in(p, hub, "erin")
        yield p


def restart_lines(page: Page) -> list[str]:
    return [t for t in info_lines(page) if t in ("Restarting R…", "R is ready again.")]


def toast(page: Page, text: str) -> None:
    expect(page.locator(".toast").filter(has_text=text).last).to_be_visible()


def info_lines(page: Page) -> list[str]:
    for _ in range(5):  # lines may arrive while the virtualised output is read
        try:
            return [ln["text"] for ln in console_lines(page) if ln["stream"] == "info"]
        except AssertionError:
            page.wait_for_timeout(200)
    return [ln["text"] for ln in console_lines(page) if ln["stream"] == "info"]


def test_start_notices_stay_and_restart_asks_and_says_ready(
    browser: Browser, hub: HubProcess, api: httpx.Client, page: Page
) -> None:
    ws = ensure_workspace(api, "restart")
    hub.make_user("finn")
    api.put(f"/api/workspaces/{ws}/members", json={"user": "finn", "role": "editor"})
    open_ws(page, hub, ws)

    # the session runs without its database and Spark: the console keeps saying so
    out = console_out(page)
    expect(out).to_contain_text(NO_DATABASE)
    expect(out).to_contain_text(NO_SPARK)
    expect(page.get_by_test_id("session-status")).to_have_text("Ready")
    notices = [t for t in info_lines(page) if t.startswith(("No PostgreSQL", "No Spark"))]
    assert len(notices) == 2 and "rsparkhub doctor" in notices[0], notices

    # alone: Restart R restarts at once and says when R is ready again
    restart = page.get_by_test_id("restart-button")
    expect(restart).to_have_text("↻ Restart R")
    console_run(page, "x_before <- 1")
    console_idle(page)
    restart.click()
    expect(page.get_by_test_id("restart-confirm")).to_have_count(0)
    expect(out).to_contain_text("R is ready again.", timeout=T_SESSION)
    assert restart_lines(page) == ["Restarting R…", "R is ready again."]

    # the language on the button follows the console's
    page.get_by_test_id("console-language").select_option("python")
    expect(restart).to_have_text("↻ Restart Python")
    page.get_by_test_id("console-language").select_option("r")

    # someone else attached: asked first, naming them; both consoles say when R is back
    with page_of(browser, WIDE) as finn:
        log_in(finn, hub, "finn")
        open_ws(finn, hub, ws)
        expect(page.get_by_test_id("presence").locator("[data-user=finn]")).to_be_visible()
        page.bring_to_front()
        restart.click()
        dialog = page.get_by_test_id("restart-confirm")
        expect(dialog).to_contain_text("finn is also attached")
        expect(dialog).to_contain_text("for everyone")
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_have_count(0)
        # finn's console replayed the session: count the ready lines from here on
        before = {id(p): info_lines(p).count("R is ready again.") for p in (page, finn)}
        restart.click()
        dialog.get_by_role("button", name="Restart R").click()
        for p in (page, finn):
            eventually_sync(
                lambda p=p, n=before[id(p)] + 1: info_lines(p).count("R is ready again.") == n,
                timeout=T_SESSION / 1000,
                what=f"R is ready again ({p is page})",
            )
            assert restart_lines(p)[-2:] == ["Restarting R…", "R is ready again."]


def test_command_palette_and_source_from_the_file_tree(
    hub: HubProcess, api: httpx.Client, page: Page
) -> None:
    ws = ensure_workspace(api, "palette")
    upload(api, ws, "hello.R", 'cat("hello from the tree\\n")\n')
    upload(api, ws, "other.R", 'cat("hello from the editor\\n")\n')
    open_ws(page, hub, ws)
    open_file(page, "other.R")

    # F1: every command with its keys
    page.keyboard.press("F1")
    palette = page.get_by_test_id("command-palette")
    expect(palette).to_be_visible()
    source = palette.locator("[data-command='editor.source']")
    expect(source).to_contain_text("Source the file")
    expect(source.locator("kbd")).to_have_text("Ctrl+Shift+S")
    expect(palette.locator("[data-command='palette'] kbd")).to_have_text(["Ctrl+Shift+P", "F1"])
    expect(palette.locator("[data-command='console.restart']")).to_contain_text("Restart R")
    expect(palette.locator("[data-command='focus.console'] kbd")).to_have_text("Ctrl+3")
    shot(palette, "command-palette.png")
    page.keyboard.press("Escape")
    expect(palette).to_have_count(0)

    # Ctrl+Shift+P, type to filter, Enter runs the first match: Source the editor's file
    page.locator("[data-testid=console-input] .cm-content").click()
    page.keyboard.press("Control+Shift+P")
    expect(palette).to_be_visible()
    page.get_by_test_id("command-filter").fill("source file")
    expect(palette.get_by_test_id("command-item")).to_have_count(1)
    page.keyboard.press("Enter")
    expect(palette).to_have_count(0)
    expect(console_out(page)).to_contain_text("hello from the editor", timeout=T_RUN)
    console_idle(page)

    # a command moves the focus: Go to the Files pane
    page.keyboard.press("F1")
    page.get_by_test_id("command-filter").fill("files pane")
    palette.locator("[data-command='focus.files']").click()
    expect(page.locator("[data-testid=files-pane] [role=treeitem]:focus")).to_have_count(1)

    # Ctrl+Shift+S on a file in the tree sources that file (not the editor's)
    file_item(page, "hello.R").focus()
    page.keyboard.press("Control+Shift+S")
    expect(console_out(page)).to_contain_text("hello from the tree", timeout=T_RUN)
    console_idle(page)
    texts = [ln["text"] for ln in console_lines(page)]
    assert texts.count("hello from the editor") == 1, texts
    assert "Sourcing hello.R" in texts or '> cat("hello from the tree\\n")' in texts, texts


def test_environment_pane_names_size_language_and_no_flash(
    hub: HubProcess, api: httpx.Client, page: Page
) -> None:
    ws = ensure_workspace(api, "environment")
    # every text the Environment pane's status line shows, from the first paint on
    page.add_init_script(
        """
        window.__envSeen = [];
        new MutationObserver(() => {
          const s = document.querySelector('[data-testid=env-status]');
          if (s) window.__envSeen.push(s.textContent);
        }).observe(document, {subtree: true, childList: true, characterData: true});
        """
    )
    page.goto(f"{hub.url}/#/ws/{ws}")
    page.reload()  # a new document: the script runs before the IDE's
    page.get_by_test_id("pane-tab-environment").click()
    open_ws(page, hub, ws)
    console_run(page, "puromycin <- Puromycin; a_rather_long_variable_name_for_tests <- 1:3")
    console_idle(page)
    env = page.get_by_test_id("env-pane")
    row = env.locator("[data-testid=env-row][data-name=puromycin]")
    expect(row).to_be_visible()
    seen = page.evaluate("window.__envSeen")
    assert not [t for t in seen if "no session" in t], seen

    # the name whole (not "puromyc…"), a long one whole in its tooltip
    name = row.locator("td").first
    assert name.evaluate("td => td.scrollWidth <= td.clientWidth"), "the name is cut"
    long = env.locator("[data-name=a_rather_long_variable_name_for_tests] td").first
    expect(long).to_have_attribute("title", "a_rather_long_variable_name_for_tests")
    # the size column is shown, inside the pane, with a size in it
    size = env.get_by_role("columnheader", name="Size")
    expect(size).to_be_visible()
    box, pane = size.bounding_box(), env.bounding_box()
    assert box and pane and box["x"] + box["width"] <= pane["x"] + pane["width"] + 0.5
    expect(row.locator("td").nth(2)).to_contain_text("B")
    shot(env, "environment-1440.png")

    # follows the console's language …
    language = env.get_by_test_id("env-language")
    page.get_by_test_id("console-language").select_option("python")
    expect(language).to_have_value("python")
    console_run(page, "py_value = 42")
    expect(env.locator("[data-testid=env-row][data-name=py_value]")).to_be_visible(timeout=T_RUN)
    # … until pinned
    pin = env.get_by_test_id("env-pin")
    expect(pin).to_have_attribute("aria-pressed", "false")
    pin.click()
    expect(pin).to_have_attribute("aria-pressed", "true")
    page.get_by_test_id("console-language").select_option("r")
    expect(language).to_have_value("python")
    pin.click()
    expect(language).to_have_value("r")
    expect(row).to_be_visible()


REPORT_RMD = """---
title: "Tiny"
---

```{r numbers}
sum(1:10)
```
"""


def test_render_log_is_plain_text_without_pandocs_command(
    hub: HubProcess, api: httpx.Client, page: Page
) -> None:
    ws = ensure_workspace(api, "render")
    upload(api, ws, "tiny.Rmd", REPORT_RMD)
    open_ws(page, hub, ws)
    open_file(page, "tiny.Rmd")
    page.get_by_test_id("render-button").click()
    expect(console_out(page)).to_contain_text("Rendered tiny.Rmd → tiny.html", timeout=T_RUN)
    console_idle(page)
    lines = console_lines(page)
    start = max(i for i, ln in enumerate(lines) if ln["text"].startswith("Rendering tiny.Rmd"))
    log = lines[start:]
    assert not [ln for ln in log if ln["stream"] in ("stderr", "error")], log
    assert not [ln for ln in log if "+RTS" in ln["text"] or "--to html" in ln["text"]], log
    assert any(ln["stream"] == "stdout" and "Output created" in ln["text"] for ln in log), log


def test_new_file_messages_and_upload_limit(
    hub: HubProcess, api: httpx.Client, page: Page, tmp_path: Path
) -> None:
    ws = ensure_workspace(api, "names")
    upload(api, ws, "puromycin.R", "x <- 1\n")
    open_ws(page, hub, ws)
    files = page.get_by_test_id("files-pane")
    cases = {
        "../evil.R": "Paths may not contain '..'.",
        "a//b.R": "'a//b.R' has an empty folder name ('//').",
        "trailing/": "'trailing/' ends with '/': give a file name after the last folder.",
        "   ": "File and folder names may not be blank.",
        "puromycin.R": "'puromycin.R' already exists",
    }
    for name, message in cases.items():
        files.get_by_role("button", name="+ New file").click()
        dialog = page.get_by_role("dialog", name="New file")
        dialog.get_by_label("Path (folders with /)").fill(name)
        dialog.get_by_role("button", name="Create").click()
        toast(page, message)
        expect(dialog).to_be_visible()  # the name can be corrected
        dialog.get_by_role("button", name="Cancel").click()
    listed = {f["path"] for f in api.get(f"/api/workspaces/{ws}/files").json()}
    assert listed == {"puromycin.R"}, listed

    # an upload over the file limit is refused in the page: nothing is sent
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/upload" in r.url else None)
    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * (MAX_FILE_BYTES + 512 * 1024))  # 1.5 MB
    files.locator("input[type=file]").set_input_files(str(big))
    toast(page, "'big.csv' is 1.5 MB; files are limited to 1 MB.")
    page.wait_for_timeout(500)
    assert sent == [], sent
