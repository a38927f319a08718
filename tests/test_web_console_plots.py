"""Plots in the console, in a real headless Chromium (Debian's, driven by Playwright) on a real
hub with a real R kernel: a sourced file's plots appear in the console right after the
expression that drew them, each inline thumbnail is shown whole (scaled, never cut off, also
in a short console), and clicking one shows that plot in the Plots pane."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from conftest import HubProcess
from ide import (
    T_RUN,
    console_idle,
    console_lines,
    console_out,
    ensure_workspace,
    logged_in_page,
    open_file,
    open_ws,
    upload,
)

pytestmark = pytest.mark.skipif(shutil.which("R") is None, reason="R is not installed")

DRAW_R = """\
print(1)
plot(1:10, main = "first")
print(2)
hist(c(1, 2, 2, 3, 3, 3), main = "second")
abline(v = 2, col = "red")  # finishes the histogram
print(3)
"""


@pytest.fixture(scope="module")
def page(shared_hub: HubProcess) -> Iterator[Page]:
    with logged_in_page(shared_hub, "carol") as page:
        yield page


def test_inline_plots_in_order_whole_and_open_in_the_plots_pane(
    page: Page, shared_hub: HubProcess
) -> None:
    with shared_hub.client(shared_hub.cli("token", "create", "carol").strip()) as api:
        ws = ensure_workspace(api, "console-plots")
        upload(api, ws, "draw.R", DRAW_R)
    open_ws(page, shared_hub, ws)
    open_file(page, "draw.R")
    page.get_by_test_id("source-button").click()
    out = console_out(page)
    expect(out).to_contain_text("[1] 3", timeout=T_RUN)
    console_idle(page)

    # each plot right after the expression that drew (or finished) it
    seen = [
        "plot" if ln["stream"] == "plot" else ln["text"]
        for ln in console_lines(page)
        if ln["stream"] == "plot" or ln["text"].startswith(("[1]", "> "))
    ]
    assert seen[-11:] == [
        "> print(1)",
        "[1] 1",
        '> plot(1:10, main = "first")',
        "plot",
        "> print(2)",
        "[1] 2",
        '> hist(c(1, 2, 2, 3, 3, 3), main = "second")',
        '> abline(v = 2, col = "red")  # finishes the histogram',
        "plot",
        "> print(3)",
        "[1] 3",
    ], seen

    # the thumbnails are whole: inside the console's visible area, aspect ratio kept
    thumbs = out.get_by_test_id("console-plot")
    expect(thumbs).to_have_count(2)
    for i in (0, 1):
        thumb = thumbs.nth(i)
        thumb.scroll_into_view_if_needed()
        img = thumb.locator("img")
        expect(img).to_have_js_property("complete", True, timeout=T_RUN)
        page.wait_for_function(
            "i => document.querySelectorAll('[data-testid=console-plot] img')[i]?.naturalWidth > 0",
            arg=i,
            timeout=T_RUN,
        )
        box = img.bounding_box()
        area = out.bounding_box()
        assert box and area
        assert box["height"] >= 80, box
        assert (
            area["y"] - 0.5 <= box["y"]
            and box["y"] + box["height"] <= area["y"] + area["height"] + 0.5
        ), (box, area)
        assert (
            area["x"] - 0.5 <= box["x"]
            and box["x"] + box["width"] <= area["x"] + area["width"] + 0.5
        ), (box, area)
        natural = img.evaluate("img => img.naturalWidth / img.naturalHeight")
        inner = img.evaluate("img => img.clientWidth / img.clientHeight")
        assert abs(natural - inner) < 0.03, (natural, inner)

    # clicking a thumbnail shows that plot in the Plots pane
    page.get_by_test_id("pane-tab-environment").click()
    thumbs.nth(0).click()
    expect(page.get_by_test_id("pane-tab-plots")).to_have_attribute("aria-selected", "true")
    pane = page.get_by_test_id("plots-pane")
    expect(pane.get_by_test_id("plot-position")).to_have_text("1 of 2")
    expect(pane.get_by_test_id("plot-thumb").nth(0)).to_have_attribute("aria-selected", "true")
    inline_src = thumbs.nth(0).locator("img").get_attribute("src") or "?"
    pane_src = pane.get_by_test_id("plot-thumb").nth(0).locator("img").get_attribute("src")
    assert (pane_src or "").endswith(inline_src), (pane_src, inline_src)
    pane_box = pane.bounding_box()
    for i in (0, 1):
        box = pane.get_by_test_id("plot-thumb").nth(i).bounding_box()
        assert pane_box and box
        assert box["y"] + box["height"] <= pane_box["y"] + pane_box["height"] + 0.5, (box, pane_box)
    thumbs.nth(1).click()
    expect(pane.get_by_test_id("plot-position")).to_have_text("2 of 2")
    thumbs.nth(0).click()
    expect(pane.get_by_test_id("plot-position")).to_have_text("1 of 2")
