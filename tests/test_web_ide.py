"""The web IDE end to end, in a real headless Chromium (Debian's, driven by Playwright) on a
real hub with real R, Python and bash kernels: login and home page, workspaces from the
bundled examples, editor + console (source, run, render), plots, environment, data
viewer, help, the sandboxed Viewer, two browsers editing one file, presence,
reconnecting across a hub restart, themes and keyboard focus.

One hub and one browser are shared by the module (the hub is restarted by the reconnect
test, which therefore runs last); every test opens what it needs itself (workspaces are
created over REST when an earlier test did not make them), so a single test can also run
alone. Screenshots of the panes are written to docs/screenshots/*.png on every run."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from browser import chromium
from conftest import PASSWORD, HubProcess
from ide import (
    T_RUN,
    T_SESSION,
    T_UI,
    VIEWPORT,
    console_idle,
    console_lines,
    console_out,
    console_run,
    editor_content,
    editor_tab,
    ensure_workspace,
    file_item,
    hub_text,
    log_in,
    new_page,
    open_file,
    open_ws,
    shot,
    type_at_end,
    upload,
)

# Puromycin as R has it (R: nrow 23, ncol 3, min(rate) 47, max(rate) 207, first row's
# rate 76, 12 treated / 11 untreated, 8 rows with 0.1 <= conc <= 0.3)
PURO = {"nrow": 23, "ncol": 3, "min": "47", "max": "207", "first": "76", "treated": 12}

EVIL_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>evil (not run)</title></head>
<body>waiting
<script>
(async () => {
  let api;
  try {
    const r = await fetch('/api/me', {credentials: 'include'});
    api = 'LEAKED ' + r.status + ' ' + (await r.text());
  } catch (e) {
    api = 'BLOCKED ' + e;
  }
  let cookie;
  try { cookie = 'COOKIE [' + document.cookie + ']'; } catch (e) { cookie = 'NOCOOKIE ' + e.name; }
  let parentDoc;
  try { parentDoc = 'PARENT ' + window.parent.document.title; } catch (e) { parentDoc = 'NOPARENT ' + e.name; }
  document.title = api;
  document.body.textContent = [api, cookie, parentDoc].join(' | ');
  document.body.setAttribute('data-done', '1');
})();
</script>
</body></html>
"""


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tokens(shared_hub: HubProcess) -> dict[str, str]:
    return {"alice": shared_hub.make_user("alice"), "bob": shared_hub.make_user("bob")}


@pytest.fixture(scope="module")
def alice_api(shared_hub: HubProcess, tokens: dict[str, str]) -> Iterator[httpx.Client]:
    with shared_hub.client(tokens["alice"]) as c:
        yield c


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


class PageErrors:
    """Uncaught exceptions in the pages (each is a bug of the client)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Page, who: str) -> None:
        page.on("pageerror", lambda e: self.errors.append(f"{who}: {e}"))


@pytest.fixture(scope="module")
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture(scope="module")
def alice_page(
    browser: Browser, shared_hub: HubProcess, tokens: dict[str, str], page_errors: PageErrors
) -> Iterator[Page]:
    page = new_page(browser)
    page_errors.watch(page, "alice")
    log_in(page, shared_hub, "alice")
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def bob_page(
    browser: Browser, shared_hub: HubProcess, tokens: dict[str, str], page_errors: PageErrors
) -> Iterator[Page]:
    page = new_page(browser)
    page_errors.watch(page, "bob")
    log_in(page, shared_hub, "bob")
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def puro_ws(alice_api: httpx.Client) -> str:
    # test_login_home_and_example_workspace creates it through the home page first
    return ensure_workspace(alice_api, "nls-puromycin", "nls-puromycin")


@pytest.fixture(scope="module")
def rmd_ws(alice_api: httpx.Client) -> str:
    return ensure_workspace(alice_api, "rmarkdown-report", "rmarkdown-report")


@pytest.fixture(scope="module")
def team_ws(alice_api: httpx.Client, tokens: dict[str, str]) -> str:
    """alice's workspace shared with bob (editor), holding shared.R."""
    ws = ensure_workspace(alice_api, "team")
    upload(alice_api, ws, "shared.R", "x <- 1\n")
    alice_api.put(
        f"/api/workspaces/{ws}/members", json={"user": "bob", "role": "editor"}
    ).raise_for_status()
    return ws


# --------------------------------------------------------------------------- helpers


def ensure_sourced(page: Page, hub: HubProcess, api: httpx.Client, ws: str) -> None:
    """analysis.R has run in the workspace's R session (sources it with the button if not)."""
    open_ws(page, hub, ws)
    env = api.get(f"/api/workspaces/{ws}/environment", params={"language": "r"})
    if env.status_code == 200 and "results" in {v["name"] for v in env.json()["variables"]}:
        return
    open_file(page, "analysis.R")
    page.get_by_test_id("source-button").click()
    expect(console_out(page)).to_contain_text("std_error", timeout=T_RUN)
    console_idle(page)


# --------------------------------------------------------------------------- tests


def test_one_time_login_link(browser: Browser, shared_hub: HubProcess) -> None:
    """The link made on first start logs the admin in once; the admin has no password yet,
    so the page asks for one first (tests/test_web_accounts.py goes on from there)."""
    link = re.search(r"(http://\S+/login/rso_\S+)", shared_hub.login_link())
    assert link, shared_hub.login_link()
    page = new_page(browser)
    try:
        page.goto(link.group(1))
        expect(page.get_by_test_id("choose-password")).to_contain_text("Welcome, admin")
        second = browser.new_page()  # its own context: no cookie
        try:
            second.goto(link.group(1))  # the link works once only: the login page says so
            expect(second.get_by_test_id("link-invalid")).to_contain_text("already used")
            expect(second.get_by_test_id("login-name")).to_be_visible()
        finally:
            second.context.close()
    finally:
        page.context.close()
    # The secret is never in the hub's log (its output is not a terminal here).
    log = shared_hub.log_path.read_text()
    assert log.count(link.group(1).rsplit("/", 1)[1]) == 0
    assert "/login/<redacted>" in log


def test_login_home_and_example_workspace(
    browser: Browser, shared_hub: HubProcess, tokens: dict[str, str], page_errors: PageErrors
) -> None:
    page = new_page(browser)
    page_errors.watch(page, "login")
    try:
        page.goto(shared_hub.url + "/")
        expect(page.get_by_test_id("login-name")).to_be_visible()
        shot(page, "login.png")
        # a wrong password is refused with a message
        page.get_by_test_id("login-name").fill("alice")
        page.get_by_test_id("login-password").fill("not-the-password")
        page.get_by_test_id("login-submit").click()
        expect(page.get_by_role("alert")).to_contain_text("Wrong user name or password")
        page.get_by_test_id("login-password").fill(PASSWORD)
        page.get_by_test_id("login-submit").click()
        expect(page.get_by_test_id("home")).to_be_visible()
        expect(page.get_by_label("Logged in as")).to_have_text("alice")

        page.get_by_test_id("example-select").select_option("nls-puromycin")
        page.get_by_test_id("create-from-example").click()
        link = page.locator('[data-testid=workspace-link][data-name="nls-puromycin"]')
        expect(link).to_be_visible()
        shot(page, "home.png")
        link.click()
        expect(page).to_have_url(re.compile(r"#/ws/[^/]+$"))
        expect(page.locator(".ws-title")).to_contain_text("nls-puromycin")
        expect(file_item(page, "analysis.R")).to_be_visible()
        expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
        expect(page.get_by_test_id("session-status")).to_have_attribute(
            "data-state", "running", timeout=T_SESSION
        )
        expect(page.get_by_test_id("presence").locator("[data-user=alice]")).to_be_visible()
    finally:
        page.context.close()


def test_source_script_console_and_plots(
    alice_page: Page, shared_hub: HubProcess, puro_ws: str
) -> None:
    page = alice_page
    open_ws(page, shared_hub, puro_ws)
    open_file(page, "analysis.R")
    expect(editor_content(page)).to_contain_text("data(Puromycin)")
    expect(page.get_by_test_id("source-button")).to_be_enabled()
    # Ctrl+Shift+S sources the file (the Source button does the same)
    editor_content(page).focus()
    page.keyboard.press("Control+Shift+S")
    out = console_out(page)
    expect(out).to_contain_text("Sourcing analysis.R", timeout=T_UI)
    expect(out).to_contain_text("std_error", timeout=T_RUN)  # `results`, printed last
    console_idle(page)

    lines = console_lines(page)
    texts = [ln["text"] for ln in lines]
    # source(echo = TRUE): the expressions echoed with "> ", then their output
    assert "> data(Puromycin)" in texts, texts[:40]
    assert "Formula: rate ~ Vm * conc/(K + conc)" in texts, texts
    assert any(t.startswith("Formula: rate ~ (Vm + delV * (state ==") for t in texts), texts
    plots = [ln for ln in lines if ln["stream"] == "plot"]
    assert len(plots) == 2, plots
    for p in plots:
        r = page.request.get(shared_hub.url + p["src"])
        assert r.status == 200 and r.body()[:8] == b"\x89PNG\r\n\x1a\n", (p, r.status)
    # the inline image of the last plot is drawn
    inline = out.locator("[data-testid=console-line][data-stream=plot] img").last
    inline.scroll_into_view_if_needed()
    expect(inline).to_be_visible()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=inline.element_handle()
    )
    shot(page.get_by_test_id("console"), "console.png")

    # the Plots pane: the newest plot, a pager, downloads
    page.get_by_test_id("pane-tab-plots").click()
    pane = page.get_by_test_id("plots-pane")
    expect(pane.get_by_test_id("plot-position")).to_have_text("2 of 2")
    img = pane.get_by_test_id("plot-image")
    expect(img).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    pane.get_by_test_id("plot-prev").click()
    expect(pane.get_by_test_id("plot-position")).to_have_text("1 of 2")
    expect(pane.get_by_test_id("plot-prev")).to_be_disabled()
    pane.get_by_test_id("plot-next").click()
    expect(pane.get_by_test_id("plot-position")).to_have_text("2 of 2")
    expect(pane.get_by_test_id("plot-next")).to_be_disabled()
    expect(pane.get_by_test_id("plot-thumb")).to_have_count(2)
    # drawn again at the pane's size once the run is over
    expect(img).to_have_attribute("data-rendered", "true", timeout=30_000)
    magic = {"png": b"\x89PNG", "svg": b"<svg", "pdf": b"%PDF"}
    for fmt, start in magic.items():
        a = pane.get_by_test_id(f"plot-download-{fmt}")
        expect(a).to_be_visible()
        href = a.get_attribute("href")
        assert href, fmt
        r = page.request.get(href if href.startswith("http") else shared_hub.url + href)
        assert r.status == 200, (fmt, href, r.status)
        assert start in r.body()[:300], (fmt, r.body()[:100])
    shot(pane, "plots.png")
    shot(page, "workspace.png")


def test_environment_and_data_viewer(
    alice_page: Page, shared_hub: HubProcess, alice_api: httpx.Client, puro_ws: str
) -> None:
    page = alice_page
    ensure_sourced(page, shared_hub, alice_api, puro_ws)
    page.get_by_test_id("pane-tab-environment").click()
    env = page.get_by_test_id("env-pane")
    row = lambda name: env.locator(f'[data-testid=env-row][data-name="{name}"]')  # noqa: E731
    expect(row("puro")).to_contain_text("data.frame")
    expect(row("puro")).to_contain_text("23")
    expect(row("fit_both")).to_contain_text("nls")
    expect(row("results")).to_contain_text("data.frame")
    shot(env, "environment.png")
    type_cells = {n: row(n).locator("td").nth(1) for n in ("puro", "fit_both", "results")}

    # a table opens in the Data viewer
    row("puro").click()
    expect(page.get_by_test_id("pane-tab-data")).to_have_attribute("aria-selected", "true")
    data = page.get_by_test_id("data-pane")
    total = data.get_by_test_id("data-total")
    expect(total).to_have_attribute("data-value", str(PURO["nrow"]))
    expect(total).to_contain_text(f"{PURO['nrow']} rows × {PURO['ncol']} columns")
    headers = data.get_by_test_id("data-header")
    expect(headers).to_have_count(PURO["ncol"])
    assert headers.all_inner_texts() == ["conc", "rate", "state"]

    def cell(row: int, col: int) -> Locator:
        return data.locator(
            f'[data-testid=data-row][data-row="{row}"] [data-testid=data-cell]'
        ).nth(col)

    expect(cell(0, 1)).to_have_text(PURO["first"])
    rate = data.locator('[data-testid=data-header][data-column="rate"]')
    rate.click()
    expect(rate).to_have_attribute("aria-sort", "ascending")
    expect(cell(0, 1)).to_have_text(PURO["min"])
    rate.click()
    expect(rate).to_have_attribute("aria-sort", "descending")
    expect(cell(0, 1)).to_have_text(PURO["max"])
    rate.click()
    expect(rate).to_have_attribute("aria-sort", "none")
    expect(cell(0, 1)).to_have_text(PURO["first"])

    # filters: state in (treated); conc between 0.1 and 0.3
    data.get_by_test_id("data-filter-toggle").click()
    data.get_by_test_id("data-filter-column").select_option("state")
    data.get_by_test_id("data-filter-op").select_option("in")
    data.get_by_test_id("data-filter-value").fill("treated")
    data.get_by_test_id("data-filter-apply").click()
    expect(total).to_have_attribute("data-value", str(PURO["treated"]))
    expect(data.get_by_test_id("data-filter-chip")).to_have_count(1)
    expect(data.get_by_test_id("data-row")).to_have_count(PURO["treated"])
    states = data.locator("[data-testid=data-row] [data-testid=data-cell]:nth-child(4)")
    assert set(states.all_inner_texts()) == {"treated"}, states.all_inner_texts()
    rate.click()
    expect(cell(0, 1)).to_have_text(PURO["min"])  # the minimum is a treated row
    shot(data, "data-viewer.png")
    rate.click()
    rate.click()
    data.get_by_test_id("data-filter-remove").click()
    expect(total).to_have_attribute("data-value", str(PURO["nrow"]))

    data.get_by_test_id("data-filter-column").select_option("conc")
    data.get_by_test_id("data-filter-op").select_option("between")
    data.get_by_test_id("data-filter-value").fill("0.1")
    data.get_by_test_id("data-filter-value2").fill("0.3")
    data.get_by_test_id("data-filter-apply").click()
    expect(total).to_have_attribute("data-value", "8")
    data.get_by_test_id("data-filter-remove").click()
    expect(total).to_have_attribute("data-value", str(PURO["nrow"]))

    # the global search
    data.get_by_test_id("data-search").fill("untreated")
    expect(total).to_have_attribute("data-value", str(PURO["nrow"] - PURO["treated"]))
    data.get_by_test_id("data-search").fill("")
    expect(total).to_have_attribute("data-value", str(PURO["nrow"]))

    # the classes are shown (not only in the DOM) in the IDE's default layout at 1280×720
    page.get_by_test_id("pane-tab-environment").click()
    for name, cls in (("puro", "data.frame"), ("fit_both", "nls"), ("results", "data.frame")):
        expect(type_cells[name], f"the class of {name} is not visible").to_be_visible()
        expect(type_cells[name]).to_have_text(cls)


def test_help_search_pages_links_and_console(
    alice_page: Page, shared_hub: HubProcess, puro_ws: str
) -> None:
    page = alice_page
    open_ws(page, shared_hub, puro_ws)
    page.get_by_test_id("pane-tab-help").click()
    pane = page.get_by_test_id("help-pane")
    search = pane.get_by_test_id("help-search-input")
    search.fill("linear model")
    search.press("Enter")
    lm = pane.get_by_test_id("help-search-result").filter(
        has_text=re.compile(r"lm stats.*Fitting Linear Models")
    )
    # the session's first search indexes every installed R help page and Python module
    # (agent/helpindex.py): 16 s was seen with the machine at load 4-6
    expect(lm.first).to_be_visible(timeout=60_000)
    lm.first.click()
    help_page = pane.get_by_test_id("help-page")
    expect(help_page).to_contain_text("Fitting Linear Models")
    # a link to another help page is followed inside the pane
    link = help_page.locator('a[data-help-topic="glm"]').first
    expect(link).to_be_visible()
    link.click()
    expect(help_page).to_contain_text("Fitting Generalized Linear Models")
    assert page.url.endswith(f"#/ws/{puro_ws}")  # the IDE did not navigate away
    pane.get_by_test_id("help-back").click()
    expect(help_page).to_contain_text("Fitting Linear Models")
    shot(pane, "help.png")
    # ?topic in the console opens the Help pane
    page.get_by_test_id("pane-tab-environment").click()
    console_run(page, "?mean")
    expect(page.get_by_test_id("pane-tab-help")).to_have_attribute("aria-selected", "true")
    expect(help_page).to_contain_text("Arithmetic Mean", timeout=30_000)


def test_render_rmarkdown_into_viewer(
    alice_page: Page, shared_hub: HubProcess, rmd_ws: str
) -> None:
    page = alice_page
    open_ws(page, shared_hub, rmd_ws)
    open_file(page, "report.Rmd")
    page.get_by_test_id("render-button").click()
    expect(console_out(page)).to_contain_text("Rendering report.Rmd", timeout=T_UI)
    expect(page.get_by_test_id("pane-tab-viewer")).to_have_attribute(
        "aria-selected", "true", timeout=T_RUN
    )
    expect(console_out(page)).to_contain_text("Rendered report.Rmd")
    frame_el = page.get_by_test_id("viewer-pane").get_by_test_id("viewer-frame")
    expect(frame_el).to_have_attribute("src", re.compile(r"report\.html"))
    sandbox = frame_el.get_attribute("sandbox")
    assert sandbox is not None and "allow-same-origin" not in sandbox, sandbox
    frame = page.frame_locator("[data-testid=viewer-frame]")
    expect(frame.locator("body")).to_contain_text("Stopping distances", timeout=30_000)
    expect(frame.locator("body")).to_contain_text("The five longest stops")
    img = frame.locator("img").first
    expect(img).to_have_attribute("src", re.compile(r"^data:image/"))
    shot(page.get_by_test_id("viewer-pane"), "viewer.png")


def test_viewer_sandbox_keeps_documents_away_from_the_api(
    alice_page: Page, shared_hub: HubProcess, alice_api: httpx.Client, rmd_ws: str
) -> None:
    page = alice_page
    open_ws(page, shared_hub, rmd_ws)
    # the premise: the IDE's own origin may call the API with the login cookie
    me = page.evaluate("fetch('/api/me', {credentials: 'include'}).then(r => r.text())")
    assert '"alice"' in me and "is_admin" in me, me
    upload(alice_api, rmd_ws, "evil.html", EVIL_HTML)
    item = file_item(page, "evil.html")
    expect(item).to_be_visible()  # files_changed reached the Files pane
    item.click()
    expect(page.get_by_test_id("pane-tab-viewer")).to_have_attribute("aria-selected", "true")
    frame_el = page.get_by_test_id("viewer-pane").get_by_test_id("viewer-frame")
    expect(frame_el).to_have_attribute("src", re.compile(r"evil\.html"))
    sandbox = frame_el.get_attribute("sandbox")
    assert sandbox is not None, "the Viewer's iframe has no sandbox attribute"
    assert "allow-same-origin" not in sandbox.split(), sandbox
    body = page.frame_locator("[data-testid=viewer-frame]").locator("body[data-done='1']")
    expect(body).to_be_attached()
    text = body.inner_text()
    assert "BLOCKED" in text and "LEAKED" not in text, text
    assert "alice" not in text and "is_admin" not in text, text
    assert "NOCOOKIE" in text and "NOPARENT" in text, text
    frame = frame_el.element_handle().content_frame()
    assert frame is not None
    title = frame.title()
    assert title.startswith("BLOCKED") and "alice" not in title, title


def test_two_browsers_edit_one_file(
    alice_page: Page,
    bob_page: Page,
    shared_hub: HubProcess,
    alice_api: httpx.Client,
    team_ws: str,
) -> None:
    """Both see each other's typing and cursor at once; a save is one version of both
    edits, no conflict (tests/test_web_coedit.py goes further)."""
    path = "shared.R"
    for p in (alice_page, bob_page):
        open_ws(p, shared_hub, team_ws)
        open_file(p, path)
        expect(editor_content(p)).to_contain_text("x <- 1")
    alice_page.bring_to_front()
    type_at_end(alice_page, "# from alice\n")
    expect(editor_content(bob_page)).to_contain_text("# from alice")
    bob_page.bring_to_front()
    type_at_end(bob_page, "# from bob\n")
    expect(editor_content(alice_page)).to_contain_text("# from bob")
    expect(alice_page.locator(".cm-ySelectionInfo")).to_have_text("bob")
    shot(alice_page.get_by_test_id("editor"), "coedit.png")
    bob_page.get_by_test_id("save-button").click()
    expect(editor_tab(bob_page, path)).to_have_attribute("data-dirty", "false")
    expect(editor_tab(alice_page, path)).to_have_attribute("data-dirty", "false")
    assert hub_text(alice_api, team_ws, path) == "x <- 1\n# from alice\n# from bob\n"
    history = alice_api.get(f"/api/workspaces/{team_ws}/history/{path}").json()
    authors = {a for h in history if h["version"] > 1 for a in h["author"].split(", ")}
    assert authors == {"alice", "bob"}, history


def test_presence_shows_both_users(
    alice_page: Page, bob_page: Page, shared_hub: HubProcess, team_ws: str
) -> None:
    for p in (alice_page, bob_page):
        open_ws(p, shared_hub, team_ws)
    for p in (alice_page, bob_page):
        presence = p.get_by_test_id("presence")
        expect(presence.locator("[data-user=alice]")).to_be_visible()
        expect(presence.locator("[data-user=bob]")).to_be_visible()
    # bob leaves: alice sees him go
    bob_page.goto(shared_hub.url + "/#/")
    expect(bob_page.get_by_test_id("home")).to_be_visible()
    expect(alice_page.get_by_test_id("presence").locator("[data-user=bob]")).to_have_count(0)


def test_python_and_bash_files_run(
    alice_page: Page, shared_hub: HubProcess, alice_api: httpx.Client, team_ws: str
) -> None:
    page = alice_page
    open_ws(page, shared_hub, team_ws)
    # a new Python file from the Files pane
    page.get_by_test_id("files-pane").get_by_role("button", name="New file").click()
    dialog = page.get_by_role("dialog", name="New file")
    dialog.locator("input[name=value]").fill("hello.py")
    dialog.get_by_role("button", name="Create").click()
    expect(dialog).to_be_hidden()
    expect(editor_tab(page, "hello.py")).to_have_attribute("aria-selected", "true")
    type_at_end(page, 'import sys\nprint("py says", 6 * 7, sys.version_info[0])\n')
    page.get_by_test_id("run-button").click()  # saves, then runs like `python hello.py`
    expect(console_out(page)).to_contain_text("py says 42 3", timeout=T_RUN)
    assert "py says" in hub_text(alice_api, team_ws, "hello.py")

    # a shell script uploaded over REST
    upload(alice_api, team_ws, "hello.sh", 'echo "bash says $((6 * 7))"\nls hello.py\n')
    expect(file_item(page, "hello.sh")).to_be_visible()
    open_file(page, "hello.sh")
    expect(editor_content(page)).to_contain_text("bash says")
    editor_content(page).focus()
    page.keyboard.press("Control+Shift+Enter")  # runs the file, like the Run button
    expect(console_out(page)).to_contain_text("bash says 42", timeout=T_RUN)
    console_idle(page)
    texts = [ln["text"] for ln in console_lines(page)]
    assert "hello.py" in texts, texts[-20:]


def test_theme_toggle_and_keyboard_focus(
    alice_page: Page, shared_hub: HubProcess, team_ws: str
) -> None:
    page = alice_page
    open_ws(page, shared_hub, team_ws)
    assert page.viewport_size == VIEWPORT
    # the local spawner's only profile is shown, without a picker; Spark is off and alice
    # is no admin: no Spark UI link
    expect(page.get_by_test_id("session-profile")).to_have_attribute("data-profile", "local")
    expect(page.get_by_test_id("session-profile")).to_contain_text("local")
    expect(page.get_by_test_id("profile-select")).to_have_count(0)
    expect(page.get_by_test_id("spark-ui-link")).to_have_count(0)
    html = page.locator("html")
    before = html.get_attribute("data-theme")
    toggle = page.get_by_test_id("theme-toggle")
    toggle.click()
    after = html.get_attribute("data-theme")
    assert after in ("light", "dark") and after != before, (before, after)
    # the choice survives a reload
    page.reload()
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
    expect(html).to_have_attribute("data-theme", after)
    if after == "dark":
        shot(page, "workspace-dark.png")
    toggle.click()
    expect(html).to_have_attribute("data-theme", "dark" if after == "light" else "light")

    # Ctrl+3: the console input; Ctrl+1: the Files pane; Ctrl+4: the tool tabs
    page.keyboard.press("Control+3")
    focused = "() => document.activeElement && document.activeElement.closest('[data-testid=%s]') !== null"
    page.wait_for_function(focused % "console-input")
    page.keyboard.insert_text("6 * 7")
    page.keyboard.press("Enter")
    expect(console_out(page)).to_contain_text("[1] 42", timeout=T_RUN)
    page.keyboard.press("Control+1")
    page.wait_for_function(focused % "files-pane")
    page.keyboard.press("Control+4")
    page.wait_for_function("() => document.activeElement?.getAttribute('role') === 'tab'")


def test_console_reconnects_across_a_hub_restart(
    alice_page: Page, shared_hub: HubProcess, alice_api: httpx.Client, puro_ws: str
) -> None:
    page = alice_page
    open_ws(page, shared_hub, puro_ws)
    console_idle(page)
    # record every connection state the page shows
    page.evaluate(
        """() => {
          const el = document.querySelector('[data-testid=connection-status]');
          window.__states = [el.dataset.state];
          new MutationObserver(() => window.__states.push(el.dataset.state))
            .observe(el, {attributes: true, attributeFilter: ['data-state']});
        }"""
    )
    console_run(page, 'for (i in 1:60) { cat("line", i, "\\n"); Sys.sleep(0.1) }')
    out = console_out(page)
    expect(out).to_contain_text("line 10", timeout=T_RUN)
    shown = re.findall(r"line (\d+)", out.inner_text())
    assert shown and max(map(int, shown)) < 60, shown  # the restart comes mid-way
    shared_hub.restart(signal.SIGKILL)  # the agent survives and re-dials; the page too
    expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "open", timeout=30_000
    )
    expect(out).to_contain_text("line 60", timeout=T_RUN)
    console_idle(page)
    states = page.evaluate("() => window.__states")
    assert "reconnecting" in states, states
    lines = [ln["text"].strip() for ln in console_lines(page) if ln["stream"] == "stdout"]
    got = [t for t in lines if re.fullmatch(r"line \d+", t)]
    assert got == [f"line {i}" for i in range(1, 61)], got


def test_no_uncaught_errors_in_the_pages(page_errors: PageErrors) -> None:
    assert page_errors.errors == []
