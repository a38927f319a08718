"""The session's R kernel (IRkernel), driven through the real hub: the workspace's files in
the working directory, run and source modes against Rscript, plots, help pages, files
deleted by code, completion while busy, restart; and R output streaming while one top-level
expression runs (a loop, a whole run/source file), in order with stderr and plots, adding up
to exactly what Rscript prints (see ``R_STREAM_INIT`` in ``rsparkhub.agent.modes``).
Arrival times are measured by the client, as events come off its socket. One session serves
the whole module."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from typing import Any

import pytest
import pytest_asyncio
from hubsession import Recorder, new_workspace, plots_of, results_of, stdout_of

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

from conftest import HubProcess

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed"),
]

FIT_R = """\
# Fit a nonlinear model
set.seed(42)
x <- seq(0, 10, length.out = 50)
y <- 3 * exp(-0.4 * x) + rnorm(50, sd = 0.05)
fit <- nls(y ~ a * exp(b * x), start = list(a = 1, b = -0.1))
summary(fit)
plot(x, y, main = "data")
lines(x, predict(fit), col = "red")
suppressPackageStartupMessages(library(ggplot2))
df <- data.frame(x = x, y = y,
                 fitted = predict(fit))
p <- ggplot(df, aes(x, y)) + geom_point() + geom_line(aes(y = fitted))
print(p)
head(df)
for (i in 1:3) {
  cat("i =", i, "\\n")
}
coef(fit)
"""


# A loop printing only to stdout, a loop interleaving stdout and stderr, a partial line
# completed after a pause, a printed value, a warning.
SLOW_R = """\
cat("start\\n")
for (i in 1:3) {
  cat("tick", i, "\\n")
  Sys.sleep(0.3)
}
for (i in 1:3) {
  cat("step", i, "\\n")
  message("note ", i)
  Sys.sleep(0.2)
}
cat("partial")
Sys.sleep(0.3)
cat(" line\\n")
summary(c(1.5, 2, 10))
warning("careful")
cat("end\\n")
"""


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def session(references: dict[str, subprocess.Popen[str]], shared_hub: HubProcess):
    token = shared_hub.make_user("ana")
    files = {"fit.R": FIT_R.encode(), "sub/hello.txt": b"hi\n", "slow.R": SLOW_R.encode()}
    wid = await new_workspace(shared_hub, token, files)
    async with HubClient(shared_hub.url, token) as c, c.attach(wid) as att:
        yield Recorder(att), c, wid


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory):
    """What Rscript prints for the module's scripts, started before the hub (each in its own
    directory) so that they run while the hub and the session start. Source mode's
    reference keeps the source, as an interactive R does (test_source_echo.py compares
    with ``R --interactive`` itself)."""
    source = "options(keep.source = TRUE); source({!r}, echo = TRUE)"
    runs = {
        "fit-run": ("fit.R", FIT_R, ["fit.R"]),
        "fit-source": ("fit.R", FIT_R, ["-e", source.format("fit.R")]),
        "slow-run": ("slow.R", SLOW_R, ["slow.R"]),
        "slow-source": ("slow.R", SLOW_R, ["-e", source.format("slow.R")]),
    }
    procs = {}
    for key, (name, content, args) in runs.items():
        d = tmp_path_factory.mktemp(key)
        (d / name).write_text(content)
        procs[key] = subprocess.Popen(
            ["Rscript", *args], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


async def rscript(references: dict[str, subprocess.Popen[str]], key: str) -> str:
    out, err = await asyncio.to_thread(references[key].communicate, timeout=120)
    assert references[key].returncode == 0, err
    return out


async def test_start_files_ping_and_statuses(session) -> None:
    rec, _, _ = session
    # the workspace's files were put into the working directory when the session started
    done, events = await rec.run(
        'cat(readLines("sub/hello.txt"), file.exists("fit.R"))', language="r", timeout=120
    )
    assert done.status == "ok", events
    assert stdout_of(events) == "hi TRUE"
    statuses = [e.state for _, e in rec.log if isinstance(e, P.StatusEvent) and e.language == "r"]
    assert "starting" in statuses and "idle" in statuses
    assert done.duration_ms > 0
    reply = await rec.reply(P.PingRequest(id="ping-1"))
    assert reply.ok and reply.content == {"pong": True}


async def test_run_mode_matches_rscript(session, references) -> None:
    rec, c, _ = session
    expected = await rscript(references, "fit-run")
    done, events = await rec.run(path="fit.R", mode="run", timeout=120)
    assert done.status == "ok", events
    assert stdout_of(events) == expected
    plots = plots_of(events)
    assert len(plots) == 2
    for plot in plots:
        assert plot.mime == "image/png" and plot.url
        assert (await c.plot_bytes(plot.url))[:8] == PNG_MAGIC
        assert plot.width and plot.height
    assert done.plot_ids == [p.plot_id for p in plots]
    # variables persist in the session, like RStudio's Source
    done, events = await rec.run("cat(nrow(df))", language="r")
    assert stdout_of(events) == "50"


async def test_source_mode_matches_rscript_echo(session, references) -> None:
    rec, c, _ = session
    expected = await rscript(references, "fit-source")
    done, events = await rec.run(path="fit.R", mode="source", timeout=120)
    assert done.status == "ok", events
    assert stdout_of(events) == expected
    assert "> summary(fit)" in expected and "Formula: y ~ a * exp(b * x)" in expected
    plots = plots_of(events)
    assert len(plots) == 2
    for plot in plots:
        assert (await c.plot_bytes(plot.url or "")).startswith(PNG_MAGIC)


async def test_help_request_becomes_help_event(session) -> None:
    """``?mean`` goes to the help pane (a help event naming topic and package), not into
    the console as text; the page itself comes from the help endpoint."""
    rec, _, _ = session
    done, events = await rec.run("?mean", language="r")
    assert done.status == "ok"
    helps = [e for e in events if isinstance(e, P.HelpEvent)]
    assert [(h.topic, h.package, h.kind) for h in helps] == [("mean", "base", "topic")]
    assert results_of(events) == []
    done, events = await rec.run('??"linear model"', language="r")
    assert done.status == "ok"
    [h] = [e for e in events if isinstance(e, P.HelpEvent)]
    assert h.kind == "search" and h.query == "linear model"


async def test_file_deleted_by_code_and_no_echo(session) -> None:
    rec, c, wid = session
    done, _ = await rec.run('writeLines("tmp", "scratch.txt")', language="r")
    assert done.status == "ok"
    assert await c.read_file(wid, "scratch.txt") == b"tmp\n"
    # a file deleted by code is gone from the workspace by the time the execution is done
    done, _ = await rec.run('invisible(file.remove("scratch.txt"))', language="r")
    assert done.status == "ok"
    files = {f["path"]: f for f in await c.list_files(wid)}
    assert "scratch.txt" not in files
    # files the hub put into the working directory were not sent back as new versions
    assert files["fit.R"]["version"] == 1 and files["sub/hello.txt"]["version"] == 1


async def test_is_complete_and_complete_while_busy(session) -> None:
    rec, _, _ = session
    reply = await rec.reply(P.IsCompleteRequest(id="isc1", language="r", code="f <- function(x) {"))
    assert reply.ok and reply.content["status"] == "incomplete"
    mark = len(rec.log)
    await rec.send(P.ExecuteRequest(id="sleep", code="Sys.sleep(30)", language="r"))
    await rec.wait_busy("r", mark)
    await asyncio.sleep(0.3)
    t0 = asyncio.get_running_loop().time()
    reply = await rec.reply(P.CompleteRequest(id="cmp-busy", language="r", code="me", cursor_pos=2))
    assert not reply.ok and reply.error_code == "busy"
    assert asyncio.get_running_loop().time() - t0 < 3.5
    # a ping is not stuck behind the execution either
    assert (await rec.reply(P.PingRequest(id="ping-busy"))).ok
    await rec.reply(P.InterruptRequest(id="int-sleep", language="r"))
    assert (await rec.wait_done("sleep", 5)).status == "aborted"


async def test_restart_clears_state(session, shared_hub: HubProcess) -> None:
    rec, _, _ = session
    await rec.run("zz <- 5", language="r")
    pid_file = shared_hub.data_dir / "sessions" / rec.att.session_id / "agent-kernels.pid"
    pids_before = pid_file.read_text().split()
    mark = len(rec.log)
    reply = await rec.reply(P.RestartRequest(id="rs", language="r"), 60)
    assert reply.ok
    await rec.pump(
        lambda: any(
            isinstance(e, P.StatusEvent) and e.language == "r" and e.state == "idle"
            for _, e in rec.log[mark:]
        ),
        30,
    )
    states = [
        e.state for _, e in rec.log[mark:] if isinstance(e, P.StatusEvent) and e.language == "r"
    ]
    assert states[0] == "restarting" and states[-1] == "idle"
    done, events = await rec.run("exists('zz')", language="r")
    assert results_of(events) == ["[1] FALSE"]
    # options that make printed output match Rscript survive the restart
    done, events = await rec.run(
        "cat(getOption('width'), getOption('crayon.enabled'))", language="r"
    )
    assert stdout_of(events) == "80 FALSE"
    assert pid_file.read_text().split() != pids_before


# ---------------------------------------------------------------- output streaming


def streams(timed: list[tuple[float, Any]]) -> list[tuple[float, str, str]]:
    return [(t, e.name, e.text) for t, e in timed if isinstance(e, P.StreamEvent)]


def done_time(timed: list[tuple[float, Any]]) -> float:
    return next(t for t, e in timed if isinstance(e, P.DoneEvent))


def first_index(items: list[tuple[float, str, str]], name: str, needle: str) -> int:
    return next(i for i, (_, n, text) in enumerate(items) if n == name and needle in text)


async def test_loop_output_streams_before_done(session) -> None:
    rec, _, _ = session
    code = 'for (i in 1:5) { cat("line", i, "\\n"); Sys.sleep(0.3) }'
    done, events = await rec.run(code, language="r", rid="loop5")
    assert done.status == "ok"
    assert stdout_of(events) == "".join(f"line {i} \n" for i in range(1, 6))
    timed = rec.timed("loop5")
    out = [(t, text) for t, name, text in streams(timed) if name == "stdout"]
    assert len(out) >= 3, out
    end = done_time(timed)
    assert end - out[0][0] >= 0.8, (end, out)
    assert out[-1][0] - out[0][0] >= 0.6, out  # spread over the run, not one burst
    assert out[0][1].startswith("line 1 \n")


async def test_partial_line_before_long_computation(session) -> None:
    rec, _, _ = session
    code = (
        'local({ cat("Loading\\n"); cat("Fitting..."); t0 <- Sys.time(); '
        "while (Sys.time() - t0 < 1.2) NULL; "
        'cat(" done\\n") })'
    )
    done, events = await rec.run(code, language="r", rid="partial")
    assert done.status == "ok"
    assert stdout_of(events) == "Loading\nFitting... done\n"
    timed = rec.timed("partial")
    out = [(t, text) for t, name, text in streams(timed) if name == "stdout"]
    end = done_time(timed)
    early = "".join(text for t, text in out if end - t >= 0.9)
    assert early == "Loading\nFitting..."  # sent before the busy loop, no newline added


@pytest.mark.parametrize("mode", ["run", "source"])
async def test_file_streams_in_order_and_matches_rscript(session, references, mode: str) -> None:
    rec, _, _ = session
    expected = await rscript(references, f"slow-{mode}")
    rid = f"slow-{mode}"
    done, events = await rec.run(path="slow.R", mode=mode, rid=rid)
    assert done.status == "ok", events
    assert stdout_of(events) == expected  # byte for byte
    timed = rec.timed(rid)
    items = streams(timed)
    # stdout and stderr in the order they were produced
    for i in (1, 2, 3):
        assert first_index(items, "stdout", f"step {i} \n") < first_index(
            items, "stderr", f"note {i}"
        )
    for i in (1, 2):
        assert first_index(items, "stderr", f"note {i}") < first_index(
            items, "stdout", f"step {i + 1} \n"
        )
    assert first_index(items, "stdout", "Max.") < first_index(items, "stderr", "careful")
    assert first_index(items, "stderr", "careful") < first_index(items, "stdout", "end\n")

    # ... and when they were produced, not at the end nor at the next message
    def arrival(name: str, needle: str) -> float:
        return items[first_index(items, name, needle)][0]

    assert arrival("stderr", "note 1") - arrival("stdout", "tick 1 \n") >= 0.4
    assert arrival("stdout", " line\n") - arrival("stdout", "partial") >= 0.2
    assert done_time(timed) - arrival("stdout", "tick 1 \n") >= 1.2


async def test_capture_output_and_sink_unaffected(session, tmp_path) -> None:
    rec, c, wid = session
    code = (
        "local({\n"
        '  x <- capture.output({cat("p"); print(1)})\n'
        '  cat("z")\n'
        "  Sys.sleep(0.2)\n"
        '  sink("sunk.txt"); cat("to file\\n"); Sys.sleep(0.1); print(2); sink()\n'
        "  y <- capture.output(print(3))\n"
        "  print(x); print(y)\n"
        "})"
    )
    done, events = await rec.run(code, language="r", rid="capt")
    assert done.status == "ok", events
    assert stdout_of(events) == 'z[1] "p[1] 1"\n[1] "[1] 3"\n'
    assert await c.read_file(wid, "sunk.txt") == b"to file\n[1] 2\n"
    done, events = await rec.run("cat(class(cat), class(print))", language="r")
    assert stdout_of(events) == "function function"


async def test_plots_in_one_expression_still_arrive(session) -> None:
    rec, c, _ = session
    code = (
        "local({\n"
        '  plot(1:10); cat("after first\\n"); Sys.sleep(0.2)\n'
        '  lines(1:10, col = "red")\n'
        '  plot(2:3); cat("after second\\n")\n'
        "})"
    )
    done, events = await rec.run(code, language="r", rid="plots")
    assert done.status == "ok", events
    assert stdout_of(events) == "after first\nafter second\n"
    plots = plots_of(events)
    assert len(plots) == 2
    for plot in plots:
        assert (await c.plot_bytes(plot.url or "")).startswith(PNG_MAGIC)
    assert done.plot_ids == [p.plot_id for p in plots]


async def test_many_lines_complete_and_fast(session) -> None:
    rec, _, _ = session
    t0 = time.monotonic()
    done, events = await rec.run('for (i in 1:5000) cat(i, "\\n")', language="r")
    assert done.status == "ok"
    assert stdout_of(events) == "".join(f"{i} \n" for i in range(1, 5001))
    # flushes are rate-limited: not one kernel message per cat
    assert len([e for e in events if isinstance(e, P.StreamEvent)]) < 200
    assert time.monotonic() - t0 < 20


async def test_interrupt_keeps_streamed_output(session) -> None:
    rec, _, _ = session
    code = 'for (i in 1:100) { cat("tick", i, "\\n"); Sys.sleep(0.1) }'
    await rec.send(P.ExecuteRequest(id="ticks", code=code, language="r"))
    await rec.pump(lambda: "tick 3 \n" in stdout_of(rec.events("ticks")), 30)
    reply = await rec.reply(P.InterruptRequest(id="int-ticks", language="r"))
    assert reply.ok
    assert (await rec.wait_done("ticks", 10)).status == "aborted"
    text = stdout_of(rec.events("ticks"))
    lines = text.splitlines()
    assert lines[:3] == ["tick 1 ", "tick 2 ", "tick 3 "]
    assert lines == [f"tick {i} " for i in range(1, len(lines) + 1)]
    done, events = await rec.run("cat(1+1)", language="r")
    assert done.status == "ok" and stdout_of(events) == "2"


async def test_error_after_output_and_off_switch(session) -> None:
    rec, _, _ = session
    code = 'local({ cat("before\\n"); Sys.sleep(0.2); stop("boom") })'
    done, events = await rec.run(code, language="r", rid="err")
    assert done.status == "error"
    kinds = [(type(e).__name__, getattr(e, "text", "")) for e in events]
    assert kinds.index(("StreamEvent", "before\n")) < [k for k, _ in kinds].index("ErrorEvent")
    # streaming can be turned off; the text is the same, in one piece
    code = "options(rsparkhub.stream_output = FALSE); for (i in 1:3) { cat(i); Sys.sleep(0.1) }"
    done, events = await rec.run(code, language="r", rid="off")
    assert done.status == "ok"
    assert [e.text for e in events if isinstance(e, P.StreamEvent)] == ["123"]
    await rec.run("options(rsparkhub.stream_output = TRUE)", language="r")
