"""Help as a user meets it, through the real hub, a real session and its kernels: a topic
that names pages in several packages (R 4.2's ``plot``) answers with the choice, each
choice opens its page; help search finds words anywhere in a page (R's installed Rd,
Python docstrings); a package installed from the console is found by the next search."""

from __future__ import annotations

import uuid

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

from conftest import HubProcess


async def _workspace(c: HubClient) -> str:
    ws = await c.ensure_workspace(f"help-{uuid.uuid4().hex[:8]}")
    return str(ws["id"])


async def test_a_topic_in_several_packages_offers_the_choice(
    shared_hub: HubProcess, alice: str
) -> None:
    async with HubClient(shared_hub.url, alice) as c:
        wid = await _workspace(c)
        async with c.attach(wid) as s:
            r = await s.run("?plot")
            assert r.ok, r.events
            [h] = [e for e in r.events if isinstance(e, P.HelpEvent)]
            assert (h.topic, h.package) == ("plot", None)  # no silent pick

            choices = await c.help(wid, "plot", language="r")
            assert choices["kind"] == "choices" and choices["topic"] == "plot"
            found = {(m["package"], m["title"]) for m in choices["matches"]}
            assert ("base", "Generic X-Y Plotting") in found
            assert any(pkg == "graphics" for pkg, _ in found)
            for m in choices["matches"]:
                page = await c.help(wid, m["topic"], language="r", package=m["package"])
                assert page["kind"] == "page" and page["package"] == m["package"]
                assert page["title"] == m["title"] and "<h2>" in page["html"]

            one = await c.help(wid, "mean", language="r")
            assert one["kind"] == "page" and one["package"] == "base"
            with shared_hub.client(alice) as http:
                resp = http.get(
                    f"/api/workspaces/{wid}/help",
                    params={"topic": "plot", "language": "r", "format": "html"},
                )
            assert resp.status_code == 200 and "sandbox" in resp.headers["content-security-policy"]
            assert "package=base" in resp.text and "package=graphics" in resp.text


async def test_search_finds_words_in_the_text_of_pages(shared_hub: HubProcess, alice: str) -> None:
    async with HubClient(shared_hub.url, alice) as c:
        wid = await _workspace(c)
        async with c.attach(wid) as s:
            await s.run("invisible(1)")
            # base::plot says "the coordinates of points in the plot" only in its arguments
            hits = await c.help_search(wid, "coordinates", language="r")
            plot = [h for h in hits if (h["package"], h["topic"]) == ("base", "plot")]
            assert plot and "text" in plot[0]["matched"], [h["topic"] for h in hits]
            assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
            # title and topic matches stay ahead of pages that only mention the word
            assert "text" not in hits[0]["matched"] or hits[0]["matched"] != ["text"]

            # json.dumps mentions circular references in its docstring's body only
            py = await c.help_search(wid, "circular reference check", language="python")
            assert any(h["topic"] == "json.dumps" for h in py), [h["topic"] for h in py]


INSTALL = r"""
local({
  dir <- file.path(tempdir(), "wombatpkg")
  dir.create(file.path(dir, "man"), recursive = TRUE)
  dir.create(file.path(dir, "R"))
  writeLines(c("Package: wombatpkg", "Version: 0.1", "Title: Wombats", "Description: W.",
               "License: MIT", "Author: A", "Maintainer: A <a@b.c>"),
             file.path(dir, "DESCRIPTION"))
  writeLines("export(burrow)", file.path(dir, "NAMESPACE"))
  writeLines("burrow <- function(depth) depth", file.path(dir, "R", "f.R"))
  writeLines(c("\\name{burrow}", "\\alias{burrow}", "\\title{Dig}",
               "\\description{Digs.}", "\\usage{burrow(depth)}",
               "\\arguments{\\item{depth}{how far a vombatiform digger goes.}}"),
             file.path(dir, "man", "burrow.Rd"))
  lib <- file.path(tempdir(), "userlib")
  dir.create(lib)
  system2(file.path(R.home("bin"), "R"), c("CMD", "INSTALL", "--no-test-load", "-l",
          shQuote(lib), shQuote(dir)), stdout = FALSE, stderr = FALSE)
  .libPaths(c(lib, .libPaths()))
})
"""


async def test_search_finds_a_package_installed_later(shared_hub: HubProcess, alice: str) -> None:
    async with HubClient(shared_hub.url, alice) as c:
        wid = await _workspace(c)
        async with c.attach(wid) as s:
            await s.run("invisible(1)")
            assert await c.help_search(wid, "vombatiform", language="r") == []
            r = await s.run(INSTALL)
            assert r.ok, r.events
            hits = await c.help_search(wid, "vombatiform", language="r")
            assert [(h["package"], h["topic"]) for h in hits] == [("wombatpkg", "burrow")]
            page = await c.help(wid, "burrow", language="r", package="wombatpkg")
            assert page["title"] == "Dig"
