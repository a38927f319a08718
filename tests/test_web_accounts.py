"""Accounts and sharing in the web IDE, end to end: a real hub and Debian's Chromium driven
by Playwright (tests/browser.py; every context fails its test on a request to a host that
is not loopback). Everything a user does here is done in the page: the one-time link and
"choose your password", changing it, the admin page (add a user with a link, disable,
make admin, reset with a new link, a user's sessions), the sharing dialog (add, change,
remove; what a viewer sees and why buttons are disabled), and the login page's answer to
too many failed logins. The first test is the newcomer's tour of the README.

One hub is shared by the module (its first-start link belongs to the first test); every
other test makes its users with the CLI, as an operator would before handing out links."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

import ide
from browser import chromium
from conftest import PASSWORD, HubProcess
from ide import log_in

VIEWPORT = {"width": 1280, "height": 800}
T_UI = 15_000
T_SESSION = 90_000  # a session starting (agent + kernels)
VIEWER_WHY = (
    "You are a viewer of this workspace: only its owners and editors can run code or change files."
)

expect.set_options(timeout=T_UI)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@contextmanager
def page_of(browser: Browser) -> Iterator[Page]:
    with ide.page_of(browser, VIEWPORT) as page:
        yield page


def choose_password(page: Page, password: str) -> None:
    page.get_by_test_id("password-new").fill(password)
    page.get_by_test_id("password-repeat").fill(password)
    page.get_by_test_id("password-submit").click()


def add_user(page: Page, hub: HubProcess, name: str) -> str:
    """On the admin page: add ``name`` and return the one-time link the dialog shows."""
    page.goto(hub.url + "/#/admin")
    page.get_by_test_id("new-user-name").fill(name)
    page.get_by_test_id("new-user-submit").click()
    dialog = page.get_by_test_id("login-link-dialog")
    expect(dialog).to_contain_text(f"{name} is added")
    link = page.get_by_test_id("login-link").input_value()
    assert re.fullmatch(re.escape(hub.url) + r"/login/rso_\S+", link), link
    dialog.get_by_role("button", name="Done").click()
    expect(dialog).to_be_hidden()
    return link


def create_workspace(page: Page, name: str, example: str | None = None) -> None:
    """On the home page: a workspace, empty or from a bundled example; then open it."""
    page.get_by_test_id("new-workspace-name").fill(name)
    if example:
        page.get_by_test_id("example-select").select_option(example)
        page.get_by_test_id("create-from-example").click()
    else:
        page.get_by_test_id("new-workspace-submit").click()
    link = page.locator(f'[data-testid=workspace-link][data-name="{name}"]')
    link.click()
    expect(page.get_by_test_id("files-pane")).to_be_visible()


def share(page: Page, user: str, role: str) -> None:
    """In an open workspace: share it with ``user`` as ``role`` (the dialog stays open)."""
    dialog = page.get_by_test_id("share-dialog")
    if not dialog.is_visible():
        page.get_by_test_id("share-button").click()
    dialog.get_by_test_id("share-user").fill(user)
    dialog.get_by_test_id("share-role").select_option(role)
    dialog.get_by_test_id("share-submit").click()
    expect(member(page, user)).to_have_attribute("data-role", role)


def member(page: Page, user: str) -> Locator:
    return page.locator(f'[data-testid=member-row][data-user="{user}"]')


def user_row(page: Page, user: str) -> Locator:
    return page.locator(f'[data-testid=user-row][data-user="{user}"]')


# --------------------------------------------------------------------------- the tour


def test_newcomer_goes_from_the_one_time_link_to_a_shared_workspace(
    browser: Browser, shared_hub: HubProcess
) -> None:
    """README's tour: the admin opens the first-start link, chooses a password, adds bea
    (a link to hand over), makes a workspace from an example and shares it with her as
    editor; bea opens her link, chooses her password, finds the workspace and its files,
    and logs in with her password the next time."""
    with page_of(browser) as admin, page_of(browser) as bea:
        admin.goto(shared_hub.login_link())
        expect(admin.get_by_test_id("choose-password")).to_contain_text("Welcome, admin")
        choose_password(admin, "password123")
        expect(admin.get_by_test_id("password-error")).to_contain_text(
            "20,000 most common passwords"
        )
        admin.get_by_test_id("password-new").fill("amber-kettle-north")
        admin.get_by_test_id("password-repeat").fill("amber-kettle-nort")
        admin.get_by_test_id("password-submit").click()
        expect(admin.get_by_test_id("password-error")).to_contain_text("differ")
        choose_password(admin, "amber-kettle-north")
        expect(admin.get_by_test_id("home")).to_be_visible()

        link = add_user(admin, shared_hub, "bea")
        expect(user_row(admin, "bea")).to_contain_text("not chosen yet")
        admin.get_by_role("link", name="Workspaces").click()
        create_workspace(admin, "puromycin-team", "nls-puromycin")
        share(admin, "bea", "editor")
        expect(member(admin, "admin")).to_have_attribute("data-role", "owner")
        admin.get_by_test_id("share-dialog").get_by_role("button", name="Done").click()

        bea.goto(link)
        expect(bea.get_by_test_id("choose-password")).to_contain_text("Welcome, bea")
        choose_password(bea, "bea")
        expect(bea.get_by_test_id("password-error")).to_contain_text("at least 8")
        choose_password(bea, "violet-harbour-lamp")
        ws = bea.locator('[data-testid=workspace-link][data-name="puromycin-team"]')
        ws.click()
        expect(bea.locator('[data-testid=file-item][data-path="analysis.R"]')).to_be_visible()
        expect(bea.get_by_test_id("read-only-notice")).to_have_count(0)
        bea.get_by_test_id("share-button").click()
        expect(member(bea, "bea")).to_have_attribute("data-role", "editor")
        expect(bea.get_by_test_id("share-dialog")).to_contain_text(
            "Only the workspace's owners can change who has access"
        )
        bea.get_by_test_id("share-dialog").get_by_role("button", name="Done").click()

        # The link was for once; her password is hers from now on.
        bea.goto(shared_hub.url + "/")
        bea.get_by_role("button", name="Log out").click()
        bea.goto(link)
        expect(bea.get_by_test_id("link-invalid")).to_contain_text("already used")
        log_in(bea, shared_hub, "bea", "violet-harbour-lamp")
        expect(
            bea.locator('[data-testid=workspace-link][data-name="puromycin-team"]')
        ).to_be_visible()


# --------------------------------------------------------------------------- account


def test_a_user_changes_their_password(browser: Browser, shared_hub: HubProcess) -> None:
    shared_hub.make_user("carl")
    with page_of(browser) as page:
        log_in(page, shared_hub, "carl")
        page.get_by_test_id("account-button").click()
        dialog = page.get_by_test_id("account-dialog")
        dialog.get_by_test_id("password-current").fill("not-my-password")
        choose_password(page, "silver-cactus-dream")
        expect(dialog.get_by_test_id("password-error")).to_have_text(
            "The current password is wrong."
        )
        dialog.get_by_test_id("password-current").fill(PASSWORD)
        choose_password(page, "carl-the-great")
        expect(dialog.get_by_test_id("password-error")).to_contain_text("user name")
        choose_password(page, "silver-cactus-dream")
        expect(dialog).to_be_hidden()
        page.get_by_role("button", name="Log out").click()
        log_in(page, shared_hub, "carl", "silver-cactus-dream")


# --------------------------------------------------------------------------- admin


def test_admin_adds_disables_promotes_resets_and_sees_sessions(
    browser: Browser, shared_hub: HubProcess
) -> None:
    shared_hub.make_user("root", admin=True)
    dora = shared_hub.client(shared_hub.make_user("dora"))
    with page_of(browser) as admin, page_of(browser) as newcomer:
        log_in(admin, shared_hub, "root")
        admin.get_by_role("link", name="Admin").click()
        first = add_user(admin, shared_hub, "cid")
        row = user_row(admin, "cid")
        expect(row).to_contain_text("not chosen yet")

        row.get_by_test_id("user-admin").click()
        expect(row).to_have_attribute("data-admin", "true")
        row.get_by_test_id("user-admin").click()
        expect(row).to_have_attribute("data-admin", "false")
        # Nobody can lock themselves out.
        expect(user_row(admin, "root").get_by_test_id("user-disable")).to_be_disabled()

        row.get_by_test_id("user-disable").click()
        expect(row).to_have_attribute("data-disabled", "true")
        newcomer.goto(first)  # a disabled user's link does not log in
        expect(newcomer.get_by_test_id("link-invalid")).to_be_visible()
        row.get_by_test_id("user-disable").click()
        expect(row).to_have_attribute("data-disabled", "false")

        # A reset: a new link, and the first one ends.
        row.get_by_test_id("user-reset").click()
        admin.get_by_role("button", name="Reset the password").click()
        expect(admin.get_by_test_id("login-link-dialog")).to_contain_text("New login link for cid")
        second = admin.get_by_test_id("login-link").input_value()
        assert second != first and "/login/rso_" in second
        admin.get_by_test_id("login-link-dialog").get_by_role("button", name="Done").click()
        newcomer.goto(first)
        expect(newcomer.get_by_test_id("link-invalid")).to_be_visible()
        newcomer.goto(second)
        expect(newcomer.get_by_test_id("choose-password")).to_contain_text("Welcome, cid")

        # dora's sessions: none, then the one she starts.
        user_row(admin, "dora").get_by_test_id("user-sessions").click()
        expect(admin.get_by_test_id("user-sessions-dialog")).to_contain_text(
            "dora has not run a session yet"
        )
        admin.get_by_test_id("user-sessions-dialog").get_by_role("button", name="Close").click()
        pid = dora.post("/api/projects", json={"name": "dp"}).json()["id"]
        wid = dora.post(f"/api/projects/{pid}/workspaces", json={"name": "dw"}).json()["id"]
        dora.post(f"/api/workspaces/{wid}/session").raise_for_status()
        try:
            user_row(admin, "dora").get_by_test_id("user-sessions").click()
            session = admin.get_by_test_id("user-session-row")
            expect(session).to_have_count(1)
            expect(session).to_contain_text("dp / dw")
            expect(session).to_have_attribute("data-state", re.compile("starting|running"))
        finally:
            dora.delete(f"/api/workspaces/{wid}/session").raise_for_status()


# --------------------------------------------------------------------------- sharing


def test_sharing_dialog_and_what_a_viewer_sees(browser: Browser, shared_hub: HubProcess) -> None:
    """olga shares a workspace with vic: added as editor, changed to viewer, removed and
    added back. The viewer sees the files and the output of olga's code as it happens, but
    the buttons that run or save are disabled and say why, and a notice names who to ask."""
    shared_hub.make_user("olga")
    shared_hub.make_user("vic")
    with page_of(browser) as olga, page_of(browser) as vic:
        log_in(olga, shared_hub, "olga")
        create_workspace(olga, "survey", "nls-puromycin")
        olga.get_by_test_id("share-button").click()
        dialog = olga.get_by_test_id("share-dialog")
        dialog.get_by_test_id("share-user").fill("nobody")
        dialog.get_by_test_id("share-submit").click()
        expect(dialog.get_by_role("alert")).to_contain_text("There is no user named 'nobody'")
        share(olga, "vic", "editor")
        member(olga, "vic").get_by_test_id("member-role").select_option("viewer")
        expect(member(olga, "vic")).to_have_attribute("data-role", "viewer")
        member(olga, "vic").get_by_test_id("member-remove").click()
        expect(member(olga, "vic")).to_have_count(0)
        share(olga, "vic", "viewer")
        expect(member(olga, "olga")).to_have_attribute("data-role", "owner")
        dialog.get_by_role("button", name="Done").click()

        log_in(vic, shared_hub, "vic")
        vic.locator('[data-testid=workspace-link][data-name="survey"]').click()
        notice = vic.get_by_test_id("read-only-notice")
        expect(notice).to_contain_text("You are a viewer of this workspace")
        expect(notice).to_contain_text("Ask olga to make you an editor.")
        vic.locator('[data-testid=file-item][data-path="analysis.R"]').click()
        for button in ("save-button", "run-button", "source-button"):
            expect(vic.get_by_test_id(button)).to_be_disabled()
            expect(vic.get_by_test_id(button)).to_have_attribute("title", VIEWER_WHY)
        new_file = vic.get_by_test_id("files-pane").get_by_role("button", name="+ New file")
        expect(new_file).to_be_disabled()
        expect(new_file).to_have_attribute("title", VIEWER_WHY)
        expect(vic.locator("[data-testid=console-input] .cm-content")).to_have_attribute(
            "contenteditable", "false"
        )

        # The stream: what olga runs appears on vic's screen too.
        olga.locator("[data-testid=console-input] .cm-content").wait_for()
        expect(olga.get_by_test_id("session-status")).to_have_attribute(
            "data-state", "running", timeout=T_SESSION
        )
        box = olga.locator("[data-testid=console-input] .cm-content")
        box.click()
        olga.keyboard.insert_text('cat("hello from olga\\n")')
        olga.keyboard.press("Enter")
        expect(vic.get_by_test_id("console-output")).to_contain_text(
            "hello from olga", timeout=T_SESSION
        )


# --------------------------------------------------------------------------- login limit


def test_login_page_says_when_to_try_again(browser: Browser, shared_hub: HubProcess) -> None:
    """After as many failed logins for one account as the hub allows (10 in 5 minutes by
    default), the login page shows the 429 answer: too many attempts, and in how many
    seconds to try again."""
    with page_of(browser) as page:
        page.goto(shared_hub.url + "/")
        page.get_by_test_id("login-name").fill("mallory")
        alert = page.locator(".login-card [role=alert]")
        for i in range(10):
            page.get_by_test_id("login-password").fill(f"guess-{i}")
            with page.expect_response("**/api/login") as answer:
                page.get_by_test_id("login-submit").click()
            assert answer.value.status == 401
            expect(alert).to_have_text("Wrong user name or password, or the account is disabled.")
        page.get_by_test_id("login-password").fill("guess-10")
        with page.expect_response("**/api/login") as answer:
            page.get_by_test_id("login-submit").click()
        assert answer.value.status == 429
        expect(alert).to_contain_text("Too many failed logins for this account")
        seconds = re.search(r"Try again in (\d+) seconds", alert.inner_text())
        assert seconds and 1 <= int(seconds.group(1)) <= 300, alert.inner_text()
        assert answer.value.headers["retry-after"] == seconds.group(1)
