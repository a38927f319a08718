"""The agent with a real R kernel (IRkernel): console, run and source modes against Rscript,
plots, interrupt, files written by code. One agent process serves the whole module."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import pytest_asyncio

from rsparkhub import protocol as P

from hubpeer import HubPeer, plots_of, sha, start_agent, stdout_of, stop_agent

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

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def r_agent(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rsession")
    workdir = root / "work"
    workdir.mkdir()
    peer = HubPeer(files={"fit.R": FIT_R.encode(), "sub/hello.txt": b"hi\n"})
    await peer.start()
    proc = await start_agent(peer, workdir)
    yield peer, proc, workdir
    await stop_agent(peer, proc)
    await peer.close()


def rscript(args: list[str], cwd: Path) -> str:
    return subprocess.run(
        ["Rscript", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=120
    ).stdout


async def test_hello_welcome_and_file_put(r_agent) -> None:
    peer, proc, workdir = r_agent
    conn = peer.connections[0]
    assert conn.headers["authorization"] == "Bearer tok-123"
    assert conn.hello.session_id == "sess-1"
    assert conn.hello.pid == proc.pid
    assert conn.hello.resumed is False
    assert conn.hello.first_unacked_seq == 1
    assert set(conn.hello.languages) == {"r", "python", "bash"}
    await peer.wait_for(lambda: (workdir / "sub/hello.txt").exists(), 10)
    assert (workdir / "fit.R").read_text() == FIT_R
    assert (workdir / "sub/hello.txt").read_bytes() == b"hi\n"
    reply = await peer.reply(P.PingRequest(id="ping-1"))
    assert reply.ok and reply.content == {"pong": True}


async def test_console_one_plus_one(r_agent) -> None:
    peer, _, _ = r_agent
    done, events = await peer.run(P.ExecuteRequest(id="c1", code="1+1", language="r"), 120)
    assert done.status == "ok"
    results = [e for e in events if isinstance(e, P.ResultEvent)]
    assert results and results[0].data["text/plain"] == "[1] 2"
    statuses = [
        env.event.state for env in peer.events.values() if isinstance(env.event, P.StatusEvent)
    ]
    assert "starting" in statuses and "idle" in statuses
    assert done.duration_ms > 0


async def test_run_mode_matches_rscript(r_agent, tmp_path: Path) -> None:
    peer, _, _ = r_agent
    (tmp_path / "fit.R").write_text(FIT_R)
    expected = await asyncio.to_thread(rscript, ["fit.R"], tmp_path)
    done, events = await peer.run(P.ExecuteRequest(id="run1", path="fit.R", mode="run"), 120)
    assert done.status == "ok", events
    assert stdout_of(events) == expected
    plots = plots_of(events)
    assert len(plots) == 2
    for plot in plots:
        assert plot.mime == "image/png"
        assert base64.b64decode(plot.content_b64)[:8] == PNG_MAGIC
        assert plot.width and plot.height
    assert done.plot_ids == [p.plot_id for p in plots]
    # variables persist in the session, like RStudio's Source
    done, events = await peer.run(P.ExecuteRequest(id="run1b", code="cat(nrow(df))", language="r"))
    assert stdout_of(events) == "50"


async def test_source_mode_matches_rscript_echo(r_agent, tmp_path: Path) -> None:
    peer, _, _ = r_agent
    (tmp_path / "fit.R").write_text(FIT_R)
    expected = await asyncio.to_thread(rscript, ["-e", 'source("fit.R", echo = TRUE)'], tmp_path)
    done, events = await peer.run(P.ExecuteRequest(id="src1", path="fit.R", mode="source"), 120)
    assert done.status == "ok", events
    assert stdout_of(events) == expected
    assert "> summary(fit)" in expected and "Formula: y ~ a * exp(b * x)" in expected
    plots = plots_of(events)
    assert len(plots) == 2
    assert all(base64.b64decode(p.content_b64).startswith(PNG_MAGIC) for p in plots)


async def test_error_in_r_code(r_agent) -> None:
    peer, _, _ = r_agent
    done, events = await peer.run(P.ExecuteRequest(id="err1", code='stop("boom")', language="r"))
    assert done.status == "error"
    errors = [e for e in events if isinstance(e, P.ErrorEvent)]
    assert errors and "boom" in errors[0].evalue


async def test_help_page_becomes_result(r_agent) -> None:
    peer, _, _ = r_agent
    done, events = await peer.run(P.ExecuteRequest(id="help1", code="?mean", language="r"))
    assert done.status == "ok"
    results = [e for e in events if isinstance(e, P.ResultEvent)]
    assert results and "Arithmetic Mean" in results[0].data["text/plain"]
    assert "\x08" not in results[0].data["text/plain"]


async def test_file_written_by_code_arrives_before_done(r_agent) -> None:
    peer, _, workdir = r_agent
    done, _ = await peer.run(
        P.ExecuteRequest(
            id="wcsv",
            code='dir.create("out"); write.csv(data.frame(a = 1:3), "out/a.csv", row.names = FALSE)',
            language="r",
        )
    )
    assert done.status == "ok"
    content = (workdir / "out/a.csv").read_bytes()
    assert peer.agent_files["out/a.csv"] == content == b'"a"\n1\n2\n3\n'
    idx_file = next(
        i
        for i, m in enumerate(peer.log)
        if isinstance(m, P.FileFromAgent) and m.path == "out/a.csv"
    )
    idx_done = next(
        i
        for i, m in enumerate(peer.log)
        if isinstance(m, P.EventEnvelope)
        and isinstance(m.event, P.DoneEvent)
        and m.event.request_id == "wcsv"
    )
    assert idx_file < idx_done
    # files put by the hub are not echoed back
    assert "fit.R" not in peer.agent_files and "sub/hello.txt" not in peer.agent_files
    # a file deleted by code is reported
    done, _ = await peer.run(
        P.ExecuteRequest(id="rm", code='invisible(file.remove("out/a.csv"))', language="r")
    )
    assert peer.agent_files["out/a.csv"] is None
    assert sha(content)


async def test_interrupt_endless_loop(r_agent) -> None:
    peer, _, _ = r_agent
    await peer.request(P.ExecuteRequest(id="loop", code="while (TRUE) {}", language="r"))
    last = max(peer.events, default=0)
    await peer.wait_for(
        lambda: any(
            isinstance(env.event, P.StatusEvent) and env.event.state == "busy"
            for s, env in peer.events.items()
            if s > last
        ),
        30,
    )
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    reply = await peer.reply(P.InterruptRequest(id="int1"))
    assert reply.ok
    await peer.wait_for(lambda: peer.done_of("loop") is not None, 5)
    assert time.monotonic() - t0 < 2.0
    assert peer.done_of("loop").status == "aborted"
    done, events = await peer.run(P.ExecuteRequest(id="after", code="1+1", language="r"))
    assert done.status == "ok"
    assert [e.data["text/plain"] for e in events if isinstance(e, P.ResultEvent)] == ["[1] 2"]


async def test_complete_and_is_complete(r_agent) -> None:
    peer, _, _ = r_agent
    reply = await peer.reply(P.CompleteRequest(id="cmp1", language="r", code="summ", cursor_pos=4))
    assert reply.ok and "summary" in reply.content["matches"]
    reply = await peer.reply(
        P.IsCompleteRequest(id="isc1", language="r", code="f <- function(x) {")
    )
    assert reply.ok and reply.content["status"] == "incomplete"


async def test_complete_while_busy_answers_busy(r_agent) -> None:
    peer, _, _ = r_agent
    await peer.request(P.ExecuteRequest(id="sleep", code="Sys.sleep(30)", language="r"))
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    reply = await peer.reply(
        P.CompleteRequest(id="cmp-busy", language="r", code="me", cursor_pos=2)
    )
    assert not reply.ok and reply.error_code == "busy"
    assert time.monotonic() - t0 < 3.5
    # a ping is not stuck behind the execution either
    assert (await peer.reply(P.PingRequest(id="ping-busy"))).ok
    await peer.reply(P.InterruptRequest(id="int-sleep", language="r"))
    await peer.wait_for(lambda: peer.done_of("sleep") is not None, 5)
    assert peer.done_of("sleep").status == "aborted"


async def test_restart_clears_state(r_agent) -> None:
    peer, _, workdir = r_agent
    await peer.run(P.ExecuteRequest(id="set", code="zz <- 5", language="r"))
    pids_before = (workdir.parent / "agent-kernels.pid").read_text().split()
    last = max(peer.events, default=0)
    reply = await peer.reply(P.RestartRequest(id="rs", language="r"), 60)
    assert reply.ok
    states = [
        env.event.state
        for s, env in sorted(peer.events.items())
        if s > last and isinstance(env.event, P.StatusEvent) and env.event.language == "r"
    ]
    assert states[0] == "restarting" and states[-1] == "idle"
    done, events = await peer.run(P.ExecuteRequest(id="get", code="exists('zz')", language="r"))
    assert [e.data["text/plain"] for e in events if isinstance(e, P.ResultEvent)] == ["[1] FALSE"]
    # options that make printed output match Rscript survive the restart
    done, events = await peer.run(
        P.ExecuteRequest(
            id="opt", code="cat(getOption('width'), getOption('crayon.enabled'))", language="r"
        )
    )
    assert stdout_of(events) == "80 FALSE"
    assert (workdir.parent / "agent-kernels.pid").read_text().split() != pids_before
