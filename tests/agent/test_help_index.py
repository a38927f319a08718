"""The agent's full-text help index (``agent/helpindex.py``) on its own: real SQLite FTS5,
the real text extractors (``Rscript r/helptext.R``, ``python -m rsparkhub.agent.helptext``)
over a real R library and real Python files, refreshed as packages appear, change and go."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from rsparkhub.agent.helpindex import HelpIndex, Hit, fts5_available, fts_query, merge

pytestmark = pytest.mark.skipif(not fts5_available(), reason="this SQLite has no FTS5")


def _topics(hits: list[Hit] | None) -> list[tuple[str, str]]:
    assert hits is not None
    return [(h.package, h.topic) for h in hits]


def build_r_package(where: Path, lib: Path, name: str, word: str) -> None:
    """A one-page R package whose help mentions ``word`` only in an argument's text,
    installed into ``lib`` with ``R CMD INSTALL``."""
    src = where / name
    shutil.rmtree(src, ignore_errors=True)
    (src / "man").mkdir(parents=True)
    (src / "R").mkdir()
    (src / "DESCRIPTION").write_text(
        f"Package: {name}\nVersion: 0.1\nTitle: Tiny\nDescription: Tiny.\nLicense: MIT\n"
        "Author: A\nMaintainer: A <a@b.c>\n"
    )
    (src / "NAMESPACE").write_text("export(tinyfun)\n")
    (src / "R" / "f.R").write_text("tinyfun <- function(x) x\n")
    (src / "man" / "tinyfun.Rd").write_text(
        "\\name{tinyfun}\\alias{tinyfun}\\title{A Tiny Function}\n"
        "\\description{Returns its argument.}\\usage{tinyfun(x)}\n"
        f"\\arguments{{\\item{{x}}{{anything, even a {word}.}}}}\n"
    )
    lib.mkdir(exist_ok=True)
    subprocess.run(
        ["R", "CMD", "INSTALL", "--no-test-load", "-l", str(lib), str(src)],
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed")
async def test_r_pages_are_found_by_words_in_their_text(tmp_path: Path) -> None:
    index = HelpIndex(tmp_path / "index")
    base = "/usr/lib/R/library"
    hits = await index.search("r", "coordinates", 200, [base], prefer=["base", "graphics"])
    assert ("base", "plot") in _topics(hits)
    assert index.last_refresh["r"].changed == index.last_refresh["r"].sources > 10
    # nothing changed: nothing is read again
    await index.search("r", "coordinates", 5, [base])
    assert index.last_refresh["r"].changed == 0
    # FTS5 syntax in a query is only words
    assert isinstance(await index.search("r", '"); DROP TABLE pages; --', 5, [base]), list)
    assert await index.search("r", "*)(", 5, [base]) == []
    assert ("base", "plot") in _topics(await index.search("r", "coordinates", 200, [base]))
    index.close()


@pytest.mark.skipif(shutil.which("R") is None, reason="R is not installed")
async def test_r_index_follows_packages_installed_changed_and_removed(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    index = HelpIndex(tmp_path / "index")
    assert _topics(await index.search("r", "numbat", 10, [str(lib)])) == []
    build_r_package(tmp_path, lib, "tinynumbat", "numbat")
    assert _topics(await index.search("r", "numbat", 10, [str(lib)])) == [("tinynumbat", "tinyfun")]
    assert index.last_refresh["r"].changed == 1
    build_r_package(tmp_path, lib, "tinynumbat", "bilby")  # reinstalled with other text
    assert _topics(await index.search("r", "numbat", 10, [str(lib)])) == []
    assert _topics(await index.search("r", "bilby", 10, [str(lib)])) == [("tinynumbat", "tinyfun")]
    shutil.rmtree(lib / "tinynumbat")
    assert _topics(await index.search("r", "bilby", 10, [str(lib)])) == []
    assert index.last_refresh["r"].removed == 1
    index.close()


async def test_python_docstrings_are_found_without_importing(tmp_path: Path) -> None:
    pkg = tmp_path / "path" / "marsupials"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Marsupials."""\nraise SystemExit("imported!")\n')
    (pkg / "pouch.py").write_text(
        textwrap.dedent(
            '''
            """Pouches."""


            def carry(joey):
                """Carry a young one.

                The wallaroo variant keeps the joey for eight months.
                """


            class Kangaroo:
                """A hopper."""

                def hop(self):
                    """Jump, quokka style."""
            '''
        )
    )
    index = HelpIndex(tmp_path / "index")
    roots = [str(tmp_path / "path")]
    assert _topics(await index.search("python", "wallaroo", 10, roots)) == [
        ("", "marsupials.pouch.carry")
    ]
    assert _topics(await index.search("python", "quokka", 10, roots)) == [
        ("", "marsupials.pouch.Kangaroo.hop")
    ]
    # built-in modules are indexed from their docstrings
    assert ("", "len") in _topics(
        await index.search("python", "number of items container", 20, roots)
    )
    (tmp_path / "path" / "extra.py").write_text('"""Koala facts: eucalyptus only."""\n')
    assert _topics(await index.search("python", "eucalyptus", 10, roots)) == [("", "extra")]
    index.close()


def test_queries_are_words_and_merging_keeps_title_matches_first() -> None:
    assert fts_query('plot "x" AND (y* OR z)') == '"plot" "x" "and" "y" "or" "z"'
    kernel = [{"topic": "coords", "package": "p", "title": "T", "matched": ["title"], "score": 20}]
    hits = [Hit("body_only", "p", "B", [], 8.0), Hit("coords", "p", "T", [], 4.0)]
    merged = merge(kernel, hits, 10)
    assert [(r["topic"], r["matched"], r["score"]) for r in merged] == [
        ("coords", ["title", "text"], 25.0),
        ("body_only", ["text"], 10.0),
    ]
