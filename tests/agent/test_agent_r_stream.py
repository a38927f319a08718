"""R output streams while one top-level expression runs (a loop, a whole run/source file),
in order with stderr and plots, and adds up to exactly what Rscript prints. Drives the real
agent and a real IRkernel (see ``R_STREAM_INIT`` in ``rsparkhub.agent.modes``)."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from rsparkhub import protocol as P

from hubpeer import HubPeer, plots_of, start_agent, stdout_of, stop_agent

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed"),
]

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
async def r_agent(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rstream")
    workdir = root / "work"
    workdir.mkdir()
    peer = HubPeer(files={"slow.R": SLOW_R.encode()})
    await peer.start()
    proc = await start_agent(peer, workdir, "--languages", "r")
    await peer.wait_for(lambda: (workdir / "slow.R").exists(), 10)
    # start the kernel outside the timed tests
    done, _ = await peer.run(P.ExecuteRequest(id="warmup", code="1", language="r"), 120)
    assert done.status == "ok"
    yield peer, workdir
    await stop_agent(peer, proc)
    await peer.close()


def rscript(args: list[str], cwd: Path) -> str:
    return subprocess.run(
        ["Rscript", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=120
    ).stdout


def streams(timed: list[tuple[float, Any]]) -> list[tuple[float, str, str]]:
    return [(t, e.name, e.text) for t, e in timed if isinstance(e, P.StreamEvent)]


def done_time(timed: list[tuple[float, Any]]) -> float:
    return next(t for t, e in timed if isinstance(e, P.DoneEvent))


def first_index(items: list[tuple[float, str, str]], name: str, needle: str) -> int:
    return next(i for i, (_, n, text) in enumerate(items) if n == name and needle in text)


async def test_loop_output_streams_before_done(r_agent) -> None:
    peer, _ = r_agent
    code = 'for (i in 1:5) { cat("line", i, "\\n"); Sys.sleep(0.3) }'
    done, events = await peer.run(P.ExecuteRequest(id="loop5", code=code, language="r"), 60)
    assert done.status == "ok"
    assert stdout_of(events) == "".join(f"line {i} \n" for i in range(1, 6))
    timed = peer.timed_events("loop5")
    out = [(t, text) for t, name, text in streams(timed) if name == "stdout"]
    assert len(out) >= 3, out
    end = done_time(timed)
    assert end - out[0][0] >= 0.8, (end, out)
    assert out[-1][0] - out[0][0] >= 0.6, out  # spread over the run, not one burst
    assert out[0][1].startswith("line 1 \n")


async def test_partial_line_before_long_computation(r_agent) -> None:
    peer, _ = r_agent
    code = (
        'local({ cat("Loading\\n"); cat("Fitting..."); t0 <- Sys.time(); '
        "while (Sys.time() - t0 < 1.2) NULL; "
        'cat(" done\\n") })'
    )
    done, events = await peer.run(P.ExecuteRequest(id="partial", code=code, language="r"), 60)
    assert done.status == "ok"
    assert stdout_of(events) == "Loading\nFitting... done\n"
    timed = peer.timed_events("partial")
    out = [(t, text) for t, name, text in streams(timed) if name == "stdout"]
    end = done_time(timed)
    early = "".join(text for t, text in out if end - t >= 0.9)
    assert early == "Loading\nFitting..."  # sent before the busy loop, no newline added


@pytest.mark.parametrize("mode", ["run", "source"])
async def test_file_streams_in_order_and_matches_rscript(r_agent, mode: str, tmp_path) -> None:
    peer, _ = r_agent
    (tmp_path / "slow.R").write_text(SLOW_R)
    args = ["slow.R"] if mode == "run" else ["-e", 'source("slow.R", echo = TRUE)']
    expected = await asyncio.to_thread(rscript, args, tmp_path)
    rid = f"slow-{mode}"
    done, events = await peer.run(P.ExecuteRequest(id=rid, path="slow.R", mode=mode), 60)
    assert done.status == "ok", events
    assert stdout_of(events) == expected  # byte for byte
    timed = peer.timed_events(rid)
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


async def test_capture_output_and_sink_unaffected(r_agent, tmp_path) -> None:
    peer, workdir = r_agent
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
    done, events = await peer.run(P.ExecuteRequest(id="capt", code=code, language="r"), 60)
    assert done.status == "ok", events
    assert stdout_of(events) == 'z[1] "p[1] 1"\n[1] "[1] 3"\n'
    assert (workdir / "sunk.txt").read_text() == "to file\n[1] 2\n"
    done, events = await peer.run(
        P.ExecuteRequest(id="cls", code="cat(class(cat), class(print))", language="r")
    )
    assert stdout_of(events) == "function function"


async def test_plots_in_one_expression_still_arrive(r_agent) -> None:
    peer, _ = r_agent
    code = (
        "local({\n"
        '  plot(1:10); cat("after first\\n"); Sys.sleep(0.2)\n'
        '  lines(1:10, col = "red")\n'
        '  plot(2:3); cat("after second\\n")\n'
        "})"
    )
    done, events = await peer.run(P.ExecuteRequest(id="plots", code=code, language="r"), 60)
    assert done.status == "ok", events
    assert stdout_of(events) == "after first\nafter second\n"
    plots = plots_of(events)
    assert len(plots) == 2
    assert all(base64.b64decode(p.content_b64).startswith(PNG_MAGIC) for p in plots)
    assert done.plot_ids == [p.plot_id for p in plots]


async def test_many_lines_complete_and_fast(r_agent) -> None:
    peer, _ = r_agent
    t0 = time.monotonic()
    done, events = await peer.run(
        P.ExecuteRequest(id="many", code='for (i in 1:5000) cat(i, "\\n")', language="r"), 60
    )
    assert done.status == "ok"
    assert stdout_of(events) == "".join(f"{i} \n" for i in range(1, 5001))
    # flushes are rate-limited: not one kernel message per cat
    assert len([e for e in events if isinstance(e, P.StreamEvent)]) < 200
    assert time.monotonic() - t0 < 20


async def test_interrupt_keeps_streamed_output(r_agent) -> None:
    peer, _ = r_agent
    code = 'for (i in 1:100) { cat("tick", i, "\\n"); Sys.sleep(0.1) }'
    await peer.request(P.ExecuteRequest(id="ticks", code=code, language="r"))
    await peer.wait_for(lambda: "tick 3 \n" in stdout_of(peer.request_events("ticks")), 30)
    reply = await peer.reply(P.InterruptRequest(id="int-ticks", language="r"))
    assert reply.ok
    await peer.wait_for(lambda: peer.done_of("ticks") is not None, 10)
    assert peer.done_of("ticks").status == "aborted"
    text = stdout_of(peer.request_events("ticks"))
    lines = text.splitlines()
    assert lines[:3] == ["tick 1 ", "tick 2 ", "tick 3 "]
    assert lines == [f"tick {i} " for i in range(1, len(lines) + 1)]
    done, events = await peer.run(P.ExecuteRequest(id="after-ticks", code="cat(1+1)", language="r"))
    assert done.status == "ok" and stdout_of(events) == "2"


async def test_errors_help_and_off_switch(r_agent) -> None:
    peer, _ = r_agent
    code = 'local({ cat("before\\n"); Sys.sleep(0.2); stop("boom") })'
    done, events = await peer.run(P.ExecuteRequest(id="err", code=code, language="r"))
    assert done.status == "error"
    kinds = [(type(e).__name__, getattr(e, "text", "")) for e in events]
    assert kinds.index(("StreamEvent", "before\n")) < [k for k, _ in kinds].index("ErrorEvent")
    done, events = await peer.run(P.ExecuteRequest(id="help", code="?mean", language="r"))
    assert done.status == "ok"
    results = [e for e in events if isinstance(e, P.ResultEvent)]
    assert results and "Arithmetic Mean" in results[0].data["text/plain"]
    # streaming can be turned off; the text is the same, in one piece
    code = "options(rsparkhub.stream_output = FALSE); for (i in 1:3) { cat(i); Sys.sleep(0.1) }"
    done, events = await peer.run(P.ExecuteRequest(id="off", code=code, language="r"))
    assert done.status == "ok"
    assert [e.text for e in events if isinstance(e, P.StreamEvent)] == ["123"]
    await peer.run(
        P.ExecuteRequest(id="on", code="options(rsparkhub.stream_output = TRUE)", language="r")
    )
