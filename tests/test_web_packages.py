"""The Packages pane in a real headless Chromium (Debian's, driven by Playwright) on a real
hub with real R and Python sessions: a workspace with a requirements.txt shows its
environment's build progress in the console and its package as `environment`; a package
installed from the R console shows as `overlay`, one of the machine's as `base`; "Add to
DESCRIPTION" declares the overlay package in the workspace's DESCRIPTION."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from test_environments import make_tarball

from conftest import HubProcess
from ide import (
    T_RUN,
    T_UI,
    console_idle,
    console_out,
    console_run,
    ensure_workspace,
    hub_text,
    logged_in_page,
    open_ws,
    shot,
)


@pytest.fixture(scope="module")
def page(shared_hub: HubProcess) -> Iterator[Page]:
    with logged_in_page(shared_hub, "pia") as page:
        yield page


def test_packages_pane_shows_sources_and_declares_overlay_packages(
    page: Page, shared_hub: HubProcess, tmp_path: Path
) -> None:
    with shared_hub.client(shared_hub.cli("token", "create", "pia").strip()) as api:
        ws = ensure_workspace(api, "packages")
        api.put(
            f"/api/workspaces/{ws}/text/requirements.txt",
            json={"content": "six==1.16.0\n", "base_version": 0},
        ).raise_for_status()
        api.post(
            f"/api/workspaces/{ws}/upload",
            files={"files": ("tinypkg_0.1.0.tar.gz", make_tarball(tmp_path))},
        ).raise_for_status()
        open_ws(page, shared_hub, ws)
        # the build's progress is in the console
        expect(console_out(page)).to_contain_text("environment (python):", timeout=T_UI)
        console_run(page, 'install.packages("tinypkg_0.1.0.tar.gz", repos = NULL, type = "source")')
        console_idle(page, T_RUN)

        page.get_by_test_id("pane-tab-packages").click()
        pane = page.get_by_test_id("packages-pane")
        pane.get_by_test_id("packages-language").select_option("python")
        six = pane.locator("[data-testid=packages-row][data-name=six]")
        expect(six).to_have_attribute("data-source", "environment", timeout=T_UI)
        expect(six).to_contain_text("1.16.0")
        expect(pane.locator("[data-testid=packages-row][data-name=pandas]")).to_have_attribute(
            "data-source", "base"
        )

        pane.get_by_test_id("packages-language").select_option("r")
        tiny = pane.locator("[data-testid=packages-row][data-name=tinypkg]")
        expect(tiny).to_have_attribute("data-source", "overlay", timeout=T_UI)
        jsonlite = pane.locator("[data-testid=packages-row][data-name=jsonlite]")
        expect(jsonlite).to_have_attribute("data-source", "base")
        expect(jsonlite.get_by_test_id("packages-add")).to_have_count(0)
        pane.get_by_test_id("packages-source").select_option("overlay")
        expect(pane.get_by_test_id("packages-row")).to_have_count(1)
        shot(pane, "packages-pane.png")
        tiny.get_by_test_id("packages-add").click()
        expect(tiny.get_by_test_id("packages-add")).to_have_text("Add to DESCRIPTION")
        text = ""
        for _ in range(50):
            r = api.get(f"/api/workspaces/{ws}/text/DESCRIPTION")
            if r.status_code == 200:
                text = hub_text(api, ws, "DESCRIPTION")
                break
            page.wait_for_timeout(100)
        assert "Imports: tinypkg" in text, text

        # the declaration changes; "Restart to rebuild" restarts the session, which builds it
        pane.get_by_test_id("packages-source").select_option("")
        pane.get_by_test_id("packages-language").select_option("python")
        env_line = pane.get_by_test_id("packages-environment")
        expect(env_line).to_contain_text("Python environment: requirements.txt · ")
        before = env_line.inner_text()
        api.put(
            f"/api/workspaces/{ws}/text/requirements.txt",
            json={"content": "six==1.17.0\n", "base_version": 1},
        ).raise_for_status()
        page.once("dialog", lambda d: d.accept())
        pane.get_by_test_id("packages-rebuild").click()
        expect(six).to_contain_text("1.17.0", timeout=T_RUN)
        expect(six).to_have_attribute("data-source", "environment")
        expect(env_line).not_to_have_text(before)
        # the overlay survived the restart
        pane.get_by_test_id("packages-language").select_option("r")
        expect(tiny).to_have_attribute("data-source", "overlay", timeout=T_UI)
