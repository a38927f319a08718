"""The History pane in a real headless Chromium (Debian's, driven by Playwright) on a real
hub with a real R kernel: a Run from the editor appears as a run record with its file
version, status, environment, plot and the file it wrote; opening the record shows them,
and picking the written file narrows the list to the run that wrote it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from conftest import HubProcess
from ide import (
    T_RUN,
    T_UI,
    console_idle,
    console_out,
    ensure_workspace,
    logged_in_page,
    open_file,
    open_ws,
    shot,
    upload,
)

SCRIPT = """\
x <- c(3, 1, 4, 1, 5, 9, 2, 6)
plot(x, type = "b", main = "history")
write.csv(data.frame(x = x, twice = 2 * x), "twice.csv", row.names = FALSE)
cat("wrote twice.csv\\n")
"""


@pytest.fixture(scope="module")
def page(shared_hub: HubProcess) -> Iterator[Page]:
    with logged_in_page(shared_hub, "hana") as page:
        yield page


def test_history_lists_a_run_with_its_outputs(page: Page, shared_hub: HubProcess) -> None:
    with shared_hub.client(shared_hub.cli("token", "create", "hana").strip()) as api:
        ws = ensure_workspace(api, "history")
        upload(api, ws, "draw.R", SCRIPT)
        upload(api, ws, "other.R", 'cat("other\\n")\n')
    open_ws(page, shared_hub, ws)
    open_file(page, "other.R")
    page.get_by_test_id("run-button").click()
    expect(console_out(page)).to_contain_text("other", timeout=T_RUN)
    console_idle(page)
    open_file(page, "draw.R")
    page.get_by_test_id("run-button").click()
    expect(console_out(page)).to_contain_text("wrote twice.csv", timeout=T_RUN)
    console_idle(page)

    page.get_by_test_id("pane-tab-history").click()
    pane = page.get_by_test_id("history-pane")
    runs = pane.get_by_test_id("history-run")
    expect(runs).to_have_count(2, timeout=T_UI)
    newest = runs.first
    expect(newest.get_by_test_id("history-command")).to_have_text("run draw.R v1")
    expect(newest).to_have_attribute("data-status", "ok", timeout=T_UI)
    expect(newest).to_contain_text("1 plot, 1 file")
    expect(runs.nth(1).get_by_test_id("history-command")).to_have_text("run other.R v1")
    expect(newest).to_contain_text("hana · ")
    expect(newest).to_contain_text(" · IDE")  # asked for by a browser

    newest.get_by_test_id("history-run-toggle").click()
    details = newest.get_by_test_id("history-details")
    expect(details.get_by_test_id("history-environment")).to_contain_text("R 4.", timeout=T_UI)
    expect(details.get_by_test_id("history-environment")).to_contain_text("packages")
    inputs = details.get_by_test_id("history-inputs")
    inputs.locator("summary").click()
    expect(inputs.get_by_test_id("history-input")).to_have_count(2)  # the files when it ran
    expect(inputs.get_by_test_id("history-input").first).to_contain_text("draw.R v1")
    packages = page.request.get(
        details.get_by_test_id("history-packages").get_attribute("href") or ""
    ).json()
    assert any(p["name"] == "IRkernel" for p in packages["languages"]["r"]["packages"])
    plot = details.get_by_test_id("history-plot")
    expect(plot).to_be_visible()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=plot.element_handle(), timeout=T_UI
    )
    link = details.get_by_test_id("history-output-link")
    expect(link).to_have_text("twice.csv v1")
    csv = page.request.get(link.get_attribute("href") or "")
    assert csv.ok and csv.text().startswith('"x","twice"')
    expect(details.get_by_test_id("history-transcript")).to_contain_text("bytes")
    transcript = page.request.get(
        details.get_by_test_id("history-transcript").get_attribute("href") or ""
    )
    assert transcript.ok and "wrote twice.csv" in transcript.text()
    shot(pane, "history-pane.png")

    # the runs of one file: the one that wrote twice.csv
    pane.get_by_test_id("history-file").select_option("twice.csv")
    expect(runs).to_have_count(1, timeout=T_UI)
    expect(runs.first.get_by_test_id("history-command")).to_have_text("run draw.R v1")
    pane.get_by_test_id("history-file").select_option("")
    expect(runs).to_have_count(2, timeout=T_UI)


def test_rerun_and_export_from_the_history_pane(page: Page, shared_hub: HubProcess) -> None:
    """Re-run the record from the History pane: a fresh session runs it again with its
    recorded files, and the pane shows the verdict; Export (one run) and Export runs (the
    workspace, in the top bar) download bundles."""
    import io
    import json
    import zipfile

    pane = page.get_by_test_id("history-pane")
    newest = pane.get_by_test_id("history-run").first
    expect(newest.get_by_test_id("history-command")).to_have_text("run draw.R v1")
    if not newest.get_by_test_id("history-details").is_visible():
        newest.get_by_test_id("history-run-toggle").click()
    details = newest.get_by_test_id("history-details")
    details.get_by_test_id("history-rerun").click()
    expect(details.get_by_test_id("history-rerun")).to_have_text("Re-running…")
    badge = details.get_by_test_id("history-verdict-badge")
    expect(badge).to_have_text("reproduced", timeout=T_RUN * 3)
    expect(details.get_by_test_id("history-verdict")).to_contain_text("1 plots, 1 files")
    expect(details.get_by_test_id("history-difference")).to_have_count(0)

    bundle = page.request.get(details.get_by_test_id("history-export").get_attribute("href") or "")
    assert bundle.ok and bundle.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(bundle.body())) as zf:
        spec = json.loads(zf.read("runs.json"))
        assert [r["command"] for r in spec["runs"]] == ["run draw.R"]
        assert zf.read("draw.R").decode() == SCRIPT
    whole = page.request.get(page.get_by_test_id("export-runs").get_attribute("href") or "")
    assert whole.ok
    with zipfile.ZipFile(io.BytesIO(whole.body())) as zf:
        commands = [r["command"] for r in json.loads(zf.read("runs.json"))["runs"]]
        assert commands == ["run other.R", "run draw.R"]
