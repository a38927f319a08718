"""Source mode in R as an R user knows it, through the real hub and IRkernel: the echo is the
file's own text (srcrefs: `76L`, `.02`, spacing, comments, line breaks) exactly as an
interactive R (``R --interactive``, ``keep.source = TRUE``) prints ``source(FILE, echo =
TRUE)``, and each plot arrives right after the expression that drew or finished it. One
session serves the module."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hubsession import Recorder, new_workspace, plots_of, stdout_of

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

from conftest import HubProcess

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(shutil.which("R") is None, reason="R is not installed"),
]

TRICKY_R = """\
# Puromycin, as typed
conc <- c(76L, 47L)   # counts
rate <- .02
x <- c( 1,2 ,  3 )


f <- function(a,
              b = 2) {
  # inside
  a + b
}
print(1)
plot(1:10)
lines(1:10,
      col = "red")   # finish it
print(2)
conc; rate
f(1,
  b = 3)
if (TRUE) {
  cat("yes\\n")
} else cat("no\\n")
f
s <- "tab\\there" ; s
1e-3 * 2
# trailing comment

"""

ORDER_R = "print(1); plot(1:10); print(2)\n"

ERROR_R = """\
plot(1:4)
abline(h = 2)
stop("boom")
"""

LOOP_R = """\
plot(1:3)
for (i in 1:2) {
  lines(1:3 + i / 10)
}
cat("after\\n")
"""

LONG = "total <- sum(" + ", ".join(str(i) for i in range(60)) + ")"
LONG_R = f"{LONG}\ntotal\n"


def interactive_r(directory: Path, name: str) -> str:
    """What an interactive R prints for ``source(name, echo = TRUE)`` (its own prompt and
    the command's echo cut off)."""
    command = f'source("{name}", echo = TRUE)\n'
    proc = subprocess.run(
        ["R", "--no-save", "--no-restore", "--interactive", "--quiet"],
        input=command,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout
    head = "> " + command
    assert out.startswith(head), out
    out = out[len(head) :]
    prompt = "> \n" if out.endswith("> \n") else "> "  # the prompt after source(), then EOF
    assert out.endswith(prompt), out
    return out[: -len(prompt)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("interactive-r")
    (d / "tricky.R").write_text(TRICKY_R)
    return interactive_r(d, "tricky.R")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def session(shared_hub: HubProcess):
    token = shared_hub.make_user("sam")
    files = {
        "tricky.R": TRICKY_R.encode(),
        "order.R": ORDER_R.encode(),
        "error.R": ERROR_R.encode(),
        "long.R": LONG_R.encode(),
        "loop.R": LOOP_R.encode(),
    }
    wid = await new_workspace(shared_hub, token, files)
    async with HubClient(shared_hub.url, token) as c, c.attach(wid) as att:
        yield Recorder(att), c


def kinds(events: list[Any]) -> list[tuple[str, str]]:
    """(stream text | "plot" | "error"), in arrival order; adjacent stream events joined
    (how text is cut into events depends on timing)."""
    out: list[tuple[str, str]] = []
    for e in events:
        if isinstance(e, P.StreamEvent):
            if out and out[-1][0] == "stream":
                out[-1] = ("stream", out[-1][1] + e.text)
            else:
                out.append(("stream", e.text))
        elif isinstance(e, P.PlotEvent):
            out.append(("plot", ""))
        elif isinstance(e, P.ErrorEvent):
            out.append(("error", e.evalue))
    return out


def position(items: list[tuple[str, str]], kind: str, needle: str = "") -> int:
    return next(i for i, (k, text) in enumerate(items) if k == kind and needle in text)


async def test_echo_is_the_file_as_interactive_r_prints_it(session, reference: str) -> None:
    rec, _ = session
    done, events = await rec.run(path="tricky.R", mode="source", timeout=120)
    assert done.status == "ok", events
    text = stdout_of(events)
    assert text == reference  # byte for byte
    for typed in ("> conc <- c(76L, 47L)   # counts\n", "> rate <- .02\n", "+   # inside\n"):
        assert typed in text
    assert "> x <- c( 1,2 ,  3 )\n" in text
    assert '+       col = "red")   # finish it\n' in text
    assert "> # trailing comment\n" in text
    # functions defined by a sourced file keep their source, as in an interactive R
    done, events = await rec.run("f", language="r")
    assert "# inside" in "".join(
        e.data.get("text/plain", "") for e in events if isinstance(e, P.ResultEvent)
    )


async def test_plot_arrives_where_it_was_drawn(session) -> None:
    rec, c = session
    done, events = await rec.run(path="order.R", mode="source")
    assert done.status == "ok", events
    items = kinds(events)
    assert [k for k, _ in items] == ["stream", "plot", "stream"], items
    assert items[0][1] == "\n> print(1); plot(1:10); print(2)\n[1] 1\n"
    assert items[2][1] == "[1] 2\n"
    [plot] = plots_of(events)
    assert (await c.plot_bytes(plot.url or ""))[:8] == b"\x89PNG\r\n\x1a\n"

    # plot() then lines(): one plot, after the expression that finished it
    done, events = await rec.run(path="tricky.R", mode="source", timeout=120)
    items = kinds(events)
    assert [k for k, _ in items].count("plot") == 1
    at = position(items, "plot")
    assert at > position(items, "stream", 'col = "red")')
    assert at < position(items, "stream", "> print(2)")
    assert position(items, "stream", "[1] 1\n") < at


async def test_plot_finished_in_a_loop_is_one_plot(session) -> None:
    rec, _ = session
    done, events = await rec.run(path="loop.R", mode="source")
    assert done.status == "ok", events
    items = kinds(events)
    assert [k for k, _ in items].count("plot") == 1, items
    assert position(items, "stream", "+ }") < position(items, "plot")
    assert position(items, "plot") < position(items, "stream", '> cat("after')


async def test_plot_before_the_error_that_stops_the_file(session) -> None:
    rec, _ = session
    done, events = await rec.run(path="error.R", mode="source")
    assert done.status == "error"
    items = kinds(events)
    assert [k for k, _ in items].count("plot") == 1
    assert position(items, "stream", "> abline") < position(items, "plot")
    assert position(items, "plot") < position(items, "stream", '> stop("boom")')
    assert position(items, "stream", '> stop("boom")') < position(items, "error", "boom")


async def test_long_expression_echoed_whole(session) -> None:
    """R cuts an echo at 150 characters ("[TRUNCATED]"); the transcript shows it all."""
    rec, _ = session
    done, events = await rec.run(path="long.R", mode="source")
    assert done.status == "ok", events
    assert stdout_of(events) == f"\n> {LONG}\n\n> total\n[1] 1770\n"


async def test_run_mode_unchanged(session) -> None:
    rec, _ = session
    done, events = await rec.run(path="order.R", mode="run")
    assert done.status == "ok"
    assert stdout_of(events) == "[1] 1\n[1] 2\n"
