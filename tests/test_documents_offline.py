"""Rendered documents typeset their math with nothing from the internet: an R Markdown
document (in a clean process and in the session's R), a Python-only R Markdown document and a
notebook are rendered through a real hub session (R, rmarkdown, pandoc, nbconvert), then
opened from the hub's display route in Chromium with every non-loopback request aborted and
failing the test. KaTeX (Debian's libjs-katex) is embedded in each HTML: the math must come
out as KaTeX's markup, in KaTeX's own fonts, with no TeX source left on the page."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Browser, Page

from rsparkhub import protocol as P
from rsparkhub.agent.documents.katex import katex_dir, katex_head, write_pandoc_filter
from rsparkhub.client import HubClient

from browser import chromium, offline_context
from conftest import HubProcess

pytestmark = pytest.mark.skipif(katex_dir() is None, reason="libjs-katex is not installed")

MATH_RMD = r"""---
title: "Math"
output:
  html_document:
    toc: true
---

# Formulas

The square $f(x) = x^2$ and Euler's $e^{i\pi} + 1 = 0$.

$$\int_0^1 x\,dx = \frac{1}{2}$$

A price of $5 and $6 is not math.

```{r}
cat("dollars from R: $7\n")
```
"""

MATHML_RMD = r"""---
title: "MathML"
output:
  html_document:
    math_method: mathml
---

The square $f(x) = x^2$.
"""

PYTHON_RMD = r"""---
title: "Python math"
---

The mean $\bar{x} = \frac{1}{n}\sum_i x_i$ and

$$\sigma^2 = \frac{1}{n}\sum_i (x_i - \bar{x})^2$$

```{python}
print("dollars from Python: $7 and $8")
```
"""


def _notebook() -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "# Notes\n\nInline $a^2 + b^2 = c^2$ and \\\\(\\alpha\\\\).\n\n"
            "$$\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}$$\n\n"
            "\\begin{equation}\nE = mc^2\n\\end{equation}\n"
        ),
        nbformat.v4.new_code_cell('print("dollars from a cell: $7 and $8")'),
    ]
    return nbformat.writes(nb).encode()


async def _render_all(hub: HubProcess, token: str) -> str:
    async with HubClient(hub.url, token) as c:
        wid = str((await c.ensure_workspace(f"math-{uuid.uuid4().hex[:8]}"))["id"])
        await c.upload(
            wid,
            {
                "math.Rmd": MATH_RMD.encode(),
                "mathml.Rmd": MATHML_RMD.encode(),
                "python.Rmd": PYTHON_RMD.encode(),
                "notes.ipynb": _notebook(),
            },
        )
        async with c.attach(wid) as s:
            for path, output, in_session in [
                ("math.Rmd", None, False),
                ("math.Rmd", "in-session.html", True),
                ("mathml.Rmd", None, False),
                ("python.Rmd", None, False),
                ("notes.ipynb", None, False),
            ]:
                events = [
                    ev async for ev in s.render(path=path, output=output, in_session=in_session)
                ]
                done = events[-1]
                assert isinstance(done, P.DoneEvent) and done.status == "ok", events
    return wid


@pytest.fixture(scope="module")
def token(shared_hub: HubProcess) -> str:
    return shared_hub.make_user("ada")


@pytest.fixture(scope="module")
def workspace(shared_hub: HubProcess, token: str) -> str:
    return asyncio.run(_render_all(shared_hub, token))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def _open(page: Page, hub: HubProcess, wid: str, path: str) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    r = page.goto(f"{hub.url}/api/workspaces/{wid}/raw/{path}")
    assert r is not None and r.status == 200
    page.wait_for_load_state("load")
    page.evaluate("document.fonts.ready.then(() => true)")
    assert not errors, errors


def _typeset(page: Page) -> dict[str, object]:
    return page.evaluate(
        """() => ({
            katex: document.querySelectorAll(".katex").length,
            display: document.querySelectorAll(".katex-display").length,
            errors: document.querySelectorAll(".katex-error").length,
            text: document.body.innerText,
            font: document.fonts.check("16px KaTeX_Main") && document.fonts.check("16px KaTeX_Math")
                  && [...document.fonts].some(f => f.family.includes("KaTeX") && f.status === "loaded"),
            scripts: [...document.scripts].map(s => s.src).filter(s => s && !s.startsWith("data:")),
        })"""
    )


@pytest.mark.parametrize("path", ["math.html", "in-session.html"])
def test_r_markdown_math_is_typeset_offline(
    shared_hub: HubProcess, token: str, workspace: str, browser: Browser, path: str
) -> None:
    with offline_context(browser, extra_http_headers={"Authorization": f"Bearer {token}"}) as ctx:
        page = ctx.new_page()
        _open(page, shared_hub, workspace, path)
        got = _typeset(page)
    assert got["katex"] == 3 and got["display"] == 1 and got["errors"] == 0, got
    text = str(got["text"])
    for source in ("$", "\\int", "\\frac", "x^2", "e^{i"):
        assert source not in text.replace("$5 and $6", "").replace("$7", ""), (source, text)
    assert "A price of $5 and $6 is not math." in text
    assert "dollars from R: $7" in text
    assert got["font"], "KaTeX's fonts (embedded) were not used"
    assert got["scripts"] == []


def test_mathml_documents_keep_mathml(
    shared_hub: HubProcess, token: str, workspace: str, browser: Browser
) -> None:
    with offline_context(browser, extra_http_headers={"Authorization": f"Bearer {token}"}) as ctx:
        page = ctx.new_page()
        _open(page, shared_hub, workspace, "mathml.html")
        assert page.locator("math").count() == 1
        assert page.locator(".katex").count() == 0
        assert "KaTeX" not in page.content()  # nothing embedded for a document that needs none


@pytest.mark.parametrize("path", ["python.html", "notes.html"])
def test_python_documents_and_notebooks_typeset_math_offline(
    shared_hub: HubProcess, token: str, workspace: str, browser: Browser, path: str
) -> None:
    with offline_context(browser, extra_http_headers={"Authorization": f"Bearer {token}"}) as ctx:
        page = ctx.new_page()
        _open(page, shared_hub, workspace, path)
        got = _typeset(page)
    expected = (2, 1) if path == "python.html" else (4, 2)  # (all, display)
    assert (got["katex"], got["display"], got["errors"]) == (*expected, 0), got
    text = str(got["text"]).replace("$7 and $8", "")
    for source in ("$", "\\sum", "\\frac", "\\alpha", "\\begin", "\\(", "\\bar"):
        assert source not in text, (source, text)
    # outputs are left as printed
    assert "dollars from" in str(got["text"]) and "$7 and $8" in str(got["text"])
    assert got["font"], "KaTeX's fonts (embedded) were not used"
    assert got["scripts"] == []  # no require.js, no MathJax, no widget manager


def test_the_embedded_block_is_whole_and_small(tmp_path: Path) -> None:
    head = katex_head(delimiters=True)
    assert head is not None and head == katex_head(delimiters=True)  # cached
    # every font a data URI, WOFF2 only; nothing for a browser to fetch
    assert "url(fonts/" not in head and "format('woff')" not in head
    assert head.count("url(data:font/woff2;base64,") == 20
    assert len(head) < 1_000_000
    # inline scripts: none is cut short by a "</script" inside it
    assert head.count("<script>") == head.count("</script>") == 3  # katex, auto-render, typeset
    assert katex_head().count("<script>") == 2  # pandoc's spans need no auto-render
    lua = write_pandoc_filter(tmp_path)
    assert lua is not None and str(tmp_path / "katex-head.html") in lua.read_text()
    assert (tmp_path / "katex-head.html").read_text() == katex_head()
