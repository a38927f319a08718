"""The Help pane in a real headless Chromium (Debian's, driven by Playwright) on a real hub
with a real R kernel: ``?plot`` (a topic in two packages in R 4.2) offers the choice and
each choice shows its page; find in page marks every match, counts them and steps through
them with the buttons and Enter / Shift+Enter; a search finds a word in a page's text."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from conftest import HubProcess
from ide import (
    console_run,
    ensure_workspace,
    logged_in_page,
    open_ws,
    shot,
)

pytestmark = pytest.mark.skipif(shutil.which("R") is None, reason="R is not installed")


@pytest.fixture(scope="module")
def page(shared_hub: HubProcess) -> Iterator[Page]:
    with logged_in_page(shared_hub, "dora") as page:
        yield page


def test_choose_between_pages_and_find_in_page(page: Page, shared_hub: HubProcess) -> None:
    with shared_hub.client(shared_hub.cli("token", "create", "dora").strip()) as api:
        ws = ensure_workspace(api, "help-choices")
    open_ws(page, shared_hub, ws)
    console_run(page, "?plot")
    expect(page.get_by_test_id("pane-tab-help")).to_have_attribute("aria-selected", "true")
    pane = page.get_by_test_id("help-pane")
    choices = pane.get_by_test_id("help-choice")
    expect(choices.first).to_be_visible(timeout=30_000)
    expect(pane.get_by_test_id("help-choices")).to_contain_text("base::plot")
    expect(pane.get_by_test_id("help-choices")).to_contain_text("graphics::plot.default")
    shot(pane, "help-choices.png")

    help_page = pane.get_by_test_id("help-page")
    pane.locator('[data-testid=help-choice][data-package="graphics"]').click()
    expect(help_page).to_contain_text("The Default Scatterplot Function")
    pane.get_by_test_id("help-back").click()
    pane.locator('[data-testid=help-choice][data-package="base"]').click()
    expect(help_page).to_contain_text("Generic X-Y Plotting")

    # find in page: every match marked, stepped with wrap-around
    find = pane.get_by_test_id("help-find-input")
    find.click()
    find.fill("coordinates")
    marks = help_page.locator("mark.rp-find-hit")
    count = pane.get_by_test_id("help-find-count")
    n = int(help_page.evaluate("el => (el.textContent.match(/coordinates/gi) || []).length"))
    assert n >= 2
    expect(marks).to_have_count(n)
    expect(count).to_have_text(f"1 of {n}")
    current = help_page.locator("mark.rp-find-current")
    expect(current).to_have_count(1)
    expect(marks.nth(0)).to_have_class(re.compile("rp-find-current"))
    pane.get_by_test_id("help-find-next").click()
    expect(count).to_have_text(f"2 of {n}")
    expect(marks.nth(1)).to_have_class(re.compile("rp-find-current"))
    find.press("Shift+Enter")
    find.press("Shift+Enter")
    expect(count).to_have_text(f"{n} of {n}")
    find.press("Enter")
    expect(count).to_have_text(f"1 of {n}")
    shot(pane, "help-find.png")
    find.press("Escape")
    expect(marks).to_have_count(0)

    # a word only in a page's text finds the page
    search = pane.get_by_test_id("help-search-input")
    language = pane.get_by_label("Language")
    if language.count():
        language.select_option("r")
    search.fill("coordinates")
    search.press("Enter")
    hit = pane.get_by_test_id("help-search-result").filter(
        has_text=re.compile(r"^R\s*plot base.*Generic X-Y Plotting.*text")
    )
    expect(hit).to_have_count(1, timeout=60_000)
