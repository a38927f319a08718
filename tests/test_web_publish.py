"""Publishing from the IDE in Debian's Chromium: the owner publishes a document from the
Viewer pane for anyone with the link; an anonymous visitor and another user of the hub open
the link in browser contexts of their own, and the published page's script — trying
``fetch('/api/me')`` with the visitor's cookie — gets nothing (opaque-origin sandbox).
Changing the audience kills the old link; unpublishing from the workspace's list kills the
URL. A plot drawn in R is published from the Plots pane the same way, and the "Shared
with me" page lists and manages publications. Every context fails the test on a request to
a non-loopback host."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from test_web_ide import EVIL_HTML

from browser import chromium
from conftest import HubProcess
from ide import (
    T_RUN,
    T_SESSION,
    console_idle,
    console_run,
    ensure_workspace,
    file_item,
    log_in,
    page_of,
    upload,
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def _sandboxed_text(page: Page) -> str:
    body = page.frame_locator("[data-testid=publication-frame]").locator("body[data-done='1']")
    expect(body).to_be_attached()
    return body.inner_text()


def _assert_blocked(page: Page, *names: str) -> None:
    text = _sandboxed_text(page)
    assert "BLOCKED" in text and "LEAKED" not in text, text
    assert "NOCOOKIE" in text and "NOPARENT" in text, text
    for name in names:
        assert name not in text, text


def test_publish_from_viewer_open_as_others_and_revoke(
    browser: Browser, shared_hub: HubProcess
) -> None:
    tag = uuid.uuid4().hex[:6]
    owner, other = f"ann-{tag}", f"cat-{tag}"
    api = shared_hub.client(shared_hub.make_user(owner))
    shared_hub.make_user(other)
    ws = ensure_workspace(api, "published")
    upload(api, ws, "evil.html", EVIL_HTML)

    with page_of(browser) as page:
        log_in(page, shared_hub, owner)
        page.goto(f"{shared_hub.url}/#/ws/{ws}")
        expect(page.get_by_test_id("connection-status")).to_have_attribute(
            "data-state", "open", timeout=30_000
        )
        file_item(page, "evil.html").click()
        viewer = page.get_by_test_id("viewer-pane")
        viewer.get_by_test_id("publish-open").click()
        dialog = page.get_by_test_id("publish-dialog")
        expect(dialog).to_be_visible()
        dialog.get_by_test_id("publish-audience").select_option("link")
        dialog.get_by_test_id("publish-submit").click()
        expect(dialog.get_by_test_id("publish-current")).to_have_attribute("data-audience", "link")
        expect(dialog).to_contain_text("evil.html version 1")
        link = dialog.get_by_test_id("publish-link").input_value()
        assert link.startswith(f"{shared_hub.url}/api/pub/") and "?token=" in link, link
        expect(dialog.get_by_test_id("publication-row")).to_have_count(1)
        # Republishing keeps the link.
        dialog.get_by_test_id("publish-submit").click()
        expect(dialog.get_by_test_id("publish-submit")).to_be_enabled()
        assert dialog.get_by_test_id("publish-link").input_value() == link

        # The owner's own browser: the published script cannot use the owner's cookie.
        own = page.context.new_page()
        own.goto(link)
        expect(own.get_by_test_id("publication-meta")).to_contain_text("evil.html version 1")
        _assert_blocked(own, owner, "is_admin")
        own.close()

        # Anyone with the link, without an account.
        with page_of(browser) as anon:
            r = anon.goto(link)
            assert r is not None and r.status == 200
            expect(anon.get_by_test_id("publication-meta")).to_contain_text("published")
            _assert_blocked(anon)
            # another user of the hub, logged in: top-level pages of the hub reach the API
            # with the cookie, the published script does not
            with page_of(browser) as cat:
                log_in(cat, shared_hub, other)
                me = cat.evaluate("fetch('/api/me', {credentials: 'include'}).then(r => r.text())")
                assert other in me, me
                cat.goto(link)
                _assert_blocked(cat, other, "is_admin")

                # The owner changes the audience to members: the old link is dead for both.
                dialog.get_by_test_id("publish-audience").select_option("members")
                dialog.get_by_test_id("publish-audience-only").click()
                expect(dialog.get_by_test_id("publish-current")).to_have_attribute(
                    "data-audience", "members"
                )
                r = anon.goto(link)  # members only now: the link alone opens nothing
                assert r is not None and r.status == 401
                expect(anon.locator("body")).not_to_contain_text("BLOCKED")
                r = cat.goto(link)
                assert r is not None and r.status == 404
                members_url = dialog.get_by_test_id("publish-link").input_value()
                assert "token" not in members_url
                r = cat.goto(members_url)
                assert r is not None and r.status == 404  # cat is not a member

        # Unpublish from the workspace's list: the URL is gone, for the owner too.
        dialog.get_by_test_id("publication-unpublish").click()
        expect(dialog.get_by_test_id("publication-row")).to_have_count(0)
        r = httpx.get(members_url, headers=dict(api.headers))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_shared_with_me_page(browser: Browser, shared_hub: HubProcess) -> None:
    """The "Shared with me" page (#/shared) lists what each user may see, with link, audience,
    rendered-at and the file versions; an editor of the workspace changes the audience,
    makes a new link, republishes and unpublishes there; a user outside the workspace sees
    only what was published for every user, without buttons."""
    tag = uuid.uuid4().hex[:6]
    owner, editor, outsider = f"ann-{tag}", f"ed-{tag}", f"cat-{tag}"
    api = shared_hub.client(shared_hub.make_user(owner))
    shared_hub.make_user(editor)
    shared_hub.make_user(outsider)
    ws = ensure_workspace(api, f"shared-{tag}")
    api.put(f"/api/workspaces/{ws}/members", json={"user": editor, "role": "editor"})
    upload(api, ws, "report.Rmd", "# report\n")
    upload(api, ws, "report.html", "<!doctype html><p>report one</p>")
    upload(api, ws, "notes.html", "<!doctype html><p>notes for all</p>")
    pubs = f"/api/workspaces/{ws}/publications"
    report = api.post(pubs, json={"kind": "document", "source": "report.html"}).json()
    notes = api.post(
        pubs, json={"kind": "document", "source": "notes.html", "audience": "hub"}
    ).json()

    def row(page: Page, pub: dict[str, str]) -> Locator:
        return page.locator(f"[data-testid=shared-row][data-id='{pub['id']}']")

    with page_of(browser) as cat:
        log_in(cat, shared_hub, outsider)
        cat.get_by_test_id("shared-link").click()
        expect(cat.get_by_test_id("shared-page")).to_be_visible()
        expect(row(cat, notes)).to_have_attribute("data-role", "")
        expect(row(cat, notes)).to_contain_text("Every user of this hub")
        expect(row(cat, report)).to_have_count(0)  # members only: not cat's
        expect(row(cat, notes).get_by_test_id("shared-republish")).to_have_count(0)
        expect(row(cat, notes).get_by_test_id("shared-audience")).to_have_count(0)

    with page_of(browser) as page:
        log_in(page, shared_hub, editor)
        page.get_by_test_id("shared-link").click()
        r = row(page, report)
        expect(r).to_have_attribute("data-role", "editor")
        expect(r).to_contain_text("report.html version 1 (source report.Rmd version 1)")
        expect(r).to_contain_text(f"shared-{tag}")  # the workspace, for members
        expect(r).to_contain_text(owner)
        # the link opens the publication's page (a new tab)
        with page.expect_popup() as popup:
            r.get_by_test_id("shared-open").click()
        opened = popup.value
        expect(opened.get_by_test_id("publication-meta")).to_contain_text("report.html version 1")
        expect(
            opened.frame_locator("[data-testid=publication-frame]").locator("body")
        ).to_contain_text("report one")
        opened.close()

        # Anyone with the link: the row's link now carries a token that works anonymously.
        r.get_by_test_id("shared-audience").select_option("link")
        expect(r).to_have_attribute("data-audience", "link")
        first = r.get_by_test_id("shared-open").get_attribute("href") or ""
        assert "?token=" in first, first
        assert httpx.get(first).status_code == 200
        r.get_by_test_id("shared-new-link").click()
        expect(r.get_by_test_id("shared-open")).not_to_have_attribute("href", first)
        second = r.get_by_test_id("shared-open").get_attribute("href") or ""
        assert httpx.get(first).status_code == 404 and httpx.get(second).status_code == 200

        # A new render, then Republish: same URL, the new version and content.
        upload(api, ws, "report.html", "<!doctype html><p>report two</p>")
        r.get_by_test_id("shared-republish").click()
        expect(r).to_contain_text("report.html version 2 (source report.Rmd version 1)")
        assert r.get_by_test_id("shared-open").get_attribute("href") == second
        content = second.replace("?token=", "/content?token=")
        assert "report two" in httpx.get(content).text

        # Unpublish: the row goes, and so does the URL.
        row(page, notes).get_by_test_id("shared-unpublish").click()
        expect(row(page, notes)).to_have_count(0)
        gone = api.get(f"/api/pub/{notes['id']}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


def test_publish_a_plot_from_the_plots_pane(browser: Browser, shared_hub: HubProcess) -> None:
    """A plot drawn in a real R session, published from the Plots pane for every user of
    the hub: another user opens the link in a context of their own and sees the image; a
    visitor without a login is asked to log in (401); the plot's bytes come with the
    Viewer's sandbox CSP, so opened on their own they are an opaque-origin document that
    cannot call the API with the visitor's cookie."""
    tag = uuid.uuid4().hex[:6]
    owner, other = f"pia-{tag}", f"oli-{tag}"
    api = shared_hub.client(shared_hub.make_user(owner))
    shared_hub.make_user(other)
    ws = ensure_workspace(api, f"plots-{tag}")

    with page_of(browser) as page:
        log_in(page, shared_hub, owner)
        page.goto(f"{shared_hub.url}/#/ws/{ws}")
        expect(page.get_by_test_id("session-status")).to_have_attribute(
            "data-state", "running", timeout=T_SESSION
        )
        console_run(page, 'plot(1:10, main = "published")')
        console_idle(page)
        page.get_by_test_id("pane-tab-plots").click()
        pane = page.get_by_test_id("plots-pane")
        expect(pane.get_by_test_id("plot-position")).to_have_text("1 of 1", timeout=T_RUN)
        pane.get_by_test_id("publish-open").click()
        dialog = page.get_by_test_id("publish-dialog")
        expect(dialog).to_contain_text("Publish this plot")
        dialog.get_by_test_id("publish-audience").select_option("hub")
        dialog.get_by_test_id("publish-submit").click()
        expect(dialog.get_by_test_id("publish-current")).to_have_attribute("data-audience", "hub")
        link = dialog.get_by_test_id("publish-link").input_value()
        assert link.startswith(f"{shared_hub.url}/api/pub/") and "token" not in link, link
        plot_id = api.get(f"/api/workspaces/{ws}/plots").json()[0]["id"]
        pubs = api.get(f"/api/workspaces/{ws}/publications").json()
        assert [(p["kind"], p["source"]) for p in pubs] == [("plot", plot_id)]

    with page_of(browser) as oli:
        log_in(oli, shared_hub, other)
        assert other in oli.evaluate("fetch('/api/me').then(r => r.text())")
        r = oli.goto(link)
        assert r is not None and r.status == 200
        expect(oli.get_by_test_id("publication-meta")).to_contain_text("Plotted")
        expect(oli.get_by_test_id("publication-meta")).to_contain_text("every user of this hub")
        img = oli.get_by_test_id("publication-plot")
        oli.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=img.element_handle()
        )
        content_url = shared_hub.url + (img.get_attribute("src") or "")
        # the bytes on their own: served like the Viewer's documents, in an opaque origin
        r = oli.goto(content_url)
        assert r is not None and r.status == 200
        csp = r.headers["content-security-policy"]
        assert "sandbox" in csp and "allow-same-origin" not in csp, csp
        assert r.headers["content-type"] == "image/png" and r.body()[:4] == b"\x89PNG"
        assert oli.evaluate("window.origin") == "null"
        got = oli.evaluate(
            "fetch('/api/me', {credentials: 'include'}).then(r => r.text(), e => 'BLOCKED')"
        )
        assert got == "BLOCKED", got

    with page_of(browser) as anon:
        r = anon.goto(link)
        assert r is not None and r.status == 401
        r = anon.goto(content_url)
        assert r is not None and r.status == 401
