"""Kernels that publish many small iopub messages fast (one per flushed line): every byte
reaches the client in order, ``done`` comes, and the session still works afterwards.

iopub is ZMQ PUB/SUB, which drops messages for a subscriber that reads slower than the
kernel publishes; the agent must not lose any (``launch.py``, ``kernels.py``). The first tests go through
the real hub; the last ones drive ``Kernel`` directly to lose an iopub ``idle`` on purpose.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import zmq
from hubsession import Recorder, new_workspace, results_of, stdout_of

from rsparkhub import protocol as P
from rsparkhub.agent import kernels
from rsparkhub.agent.kernels import Kernel
from rsparkhub.agent.launch import IOPUB_HWM, ipykernel_cmd
from rsparkhub.client import HubClient

from conftest import HubProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")


def line(i: int) -> str:
    """Line ``i`` of the flood: 100 bytes with its number first, so order is checked too."""
    return f"{i:09d}" + "x" * 90 + "\n"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def session(shared_hub: HubProcess):
    token = shared_hub.make_user("flood")
    wid = await new_workspace(shared_hub, token, {})
    async with HubClient(shared_hub.url, token) as c, c.attach(wid) as att:
        yield Recorder(att)


async def test_python_100k_flushed_lines_arrive_exactly(session: Recorder) -> None:
    n = 100_000
    code = (
        "import sys\n"
        f"for i in range({n}):\n"
        "    sys.stdout.write(f'{i:09d}' + 'x' * 90 + '\\n')\n"
        "    sys.stdout.flush()\n"
    )
    done, events = await session.run(code, language="python", timeout=240)
    assert done.status == "ok", done
    out = stdout_of(events)
    assert len(out) == n * 100
    assert out == "".join(line(i) for i in range(n))
    done, events = await session.run("1+1", language="python", timeout=30)
    assert done.status == "ok"
    assert results_of(events) == ["2"]


async def test_bash_50k_echo_lines_arrive_exactly(session: Recorder) -> None:
    n = 50_000
    code = f"for i in $(seq 1 {n}); do echo line$i; done"
    done, events = await session.run(code, language="bash", timeout=180)
    assert done.status == "ok", done
    out = stdout_of(events)
    # bash_kernel reads a pty: when a read ends between the "\r" and "\n" of a line end it
    # sends "…\r" then "\n", so a few lines end in "\r\n" (its doing, not lost output)
    assert out.replace("\r\n", "\n") == "".join(f"line{i}\n" for i in range(1, n + 1))
    done, events = await session.run("echo $((1+1))", language="bash", timeout=30)
    assert done.status == "ok"
    assert stdout_of(events) == "2\n"


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed")
async def test_r_flushed_cat_lines_arrive_exactly(session: Recorder) -> None:
    # IRkernel sends one message per flush.console() but only ~650 a second, too slow to
    # overflow a subscriber's queue on its own; this checks the same path for R.
    n = 5_000
    code = (
        f"for (i in 0:{n - 1}) {{\n"
        '  cat(sprintf("%09d%s\\n", i, strrep("x", 90)))\n'
        "  flush.console()\n"
        "}\n"
    )
    done, events = await session.run(code, language="r", timeout=180)
    assert done.status == "ok", done
    assert stdout_of(events) == "".join(line(i) for i in range(n))
    done, events = await session.run("1+1", language="r", timeout=30)
    assert done.status == "ok"
    assert results_of(events) == ["[1] 2"]


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed")
async def test_r_loop_of_60k_lines_streams_exactly_in_order(session: Recorder) -> None:
    """One top-level R loop: evaluate's text connection is replaced by an empty one after
    every flush (``renew`` in ``R_STREAM_INIT``: otherwise each line copies all earlier ones).
    Lines written in two pieces, messages between them and a last line without its newline
    all keep their bytes and their order."""
    n = 60_000
    code = (
        f"for (i in 0:{n - 1}) {{\n"
        '  cat(sprintf("%09d", i)); cat(strrep("x", 90), "\\n", sep = "")\n'
        '  if (i %% 20000 == 19999) message("m", i)\n'
        "}\n"
        'cat("tail")\n'
    )
    done, events = await session.run(code, language="r", timeout=240)
    assert done.status == "ok", done
    assert stdout_of(events) == "".join(line(i) for i in range(n)) + "tail"
    # each message comes after the line it follows and before the next one
    seen = 0
    for e in events:
        if isinstance(e, P.StreamEvent) and e.name == "stdout":
            seen += e.text.count("\n")
        elif isinstance(e, P.StreamEvent) and e.name == "stderr":
            assert e.text.strip() == f"m{seen - 1}"  # (IRkernel ends a message with "\n\n")
    assert len([e for e in events if isinstance(e, P.StreamEvent) and e.name == "stdout"]) > 3
    done, events = await session.run('cat(1:3, "\\n"); message("m")', language="r", timeout=30)
    assert done.status == "ok"
    assert stdout_of(events) == "1 2 3 \n"
    assert [e.text for e in events if isinstance(e, P.StreamEvent) and e.name == "stderr"] == [
        "m\n\n"
    ]


# ---------------------------------------------------------------------- Kernel directly


async def test_ipykernel_cmd_replaces_only_the_launcher() -> None:
    cmd = ["/py", "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{c}"]
    out = ipykernel_cmd(cmd)
    assert out[:2] == ["/py", "-Xfrozen_modules=off"]
    assert out[2] == "-c" and "XPUB_NODROP" in out[3] and "launch_new_instance" in out[3]
    assert out[4:] == ["-f", "{c}"]
    bash = ipykernel_cmd(["/py", "-m", "bash_kernel", "-f", "{c}"])
    assert bash[1] == "-c" and "XPUB_NODROP" in bash[2] and "kernel_class=BashKernel" in bash[2]
    assert bash[3:] == ["-f", "{c}"]
    # IRkernel: R must not restore a .RData by itself (the save_r_image setting decides)
    r = ["R", "--slave", "-e", "IRkernel::main()", "--args", "{c}"]
    assert ipykernel_cmd(r) == ["R", "--no-restore", "--no-save", *r[1:]]
    other = ["/usr/bin/julia", "-e", "main()", "{c}"]
    assert ipykernel_cmd(other) == other


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pykernel(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("k")
    runtime = Path("/tmp") / f"rsh-flood-{os.getpid()}"  # short: IPC socket paths
    runtime.mkdir(exist_ok=True)

    async def room() -> None:
        return None

    k = Kernel("python", cwd=d, env=dict(os.environ), wait_for_room=room, runtime_dir=runtime)
    await k.start()
    yield k
    await k.shutdown()
    shutil.rmtree(runtime, ignore_errors=True)


async def test_iopub_socket_takes_a_bounded_number_of_messages(pykernel: Kernel) -> None:
    # the kernel's socket waits instead of dropping (XPUB_NODROP), so the agent may stop
    # reading without losing anything
    assert pykernel.kc.iopub_channel.socket.getsockopt(zmq.RCVHWM) == IOPUB_HWM


async def test_lost_idle_ends_the_execution_and_late_output_is_dropped(
    pykernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    orig = pykernel._parse_iopub

    def drop_idle(frames: list[bytes]) -> Any:
        parsed = orig(frames)
        if parsed is not None and parsed[1] == "status" and b'"idle"' in parsed[2]:
            return None  # as if the kernel's PUB socket had dropped it
        return parsed

    monkeypatch.setattr(pykernel, "_parse_iopub", drop_idle)
    first: list[dict[str, Any]] = []
    t0 = time.monotonic()
    reply = await asyncio.wait_for(pykernel.execute("print('a')", first.append), 15)
    took = time.monotonic() - t0
    assert reply["status"] == "ok"
    assert kernels.IDLE_GRACE_S <= took < kernels.IDLE_GRACE_S + 3
    assert [m["content"]["text"] for m in first if m["msg_type"] == "stream"] == ["a\n"]
    assert first[-1] == {"msg_type": "status", "content": {"execution_state": "idle"}}
    monkeypatch.undo()

    # a message of the finished request arriving now goes nowhere, not to the next one
    session = pykernel.kc.session
    old = session.msg("execute_request", {})
    second: list[dict[str, Any]] = []
    late_before = pykernel._late

    async def late() -> None:
        await asyncio.sleep(0.05)
        msg = session.msg("stream", {"name": "stdout", "text": "late\n"}, parent=old["header"])
        pykernel._route_iopub([session.serialize(msg)])

    task = asyncio.create_task(late())
    reply = await asyncio.wait_for(
        pykernel.execute("import time; time.sleep(0.3); print('b')", second.append), 15
    )
    await task
    assert reply["status"] == "ok"
    assert [m["content"]["text"] for m in second if m["msg_type"] == "stream"] == ["b\n"]
    assert second[-1]["content"] == {"execution_state": "idle"}
    assert pykernel._late == late_before + 1


async def test_ipykernel_iopub_waits_instead_of_dropping(pykernel: Kernel) -> None:
    out: list[str] = []
    code = (
        "import zmq\nfrom ipykernel.kernelapp import IPKernelApp\n"
        "print(IPKernelApp.instance().iopub_thread.socket.getsockopt(zmq.SNDHWM))"
    )
    reply = await asyncio.wait_for(
        pykernel.execute(code, lambda m: out.append(m["content"].get("text", ""))), 15
    )
    assert reply["status"] == "ok"
    assert "".join(out).strip() == str(IOPUB_HWM)


async def test_a_flush_per_line_is_coalesced_and_keeps_order(pykernel: Kernel) -> None:
    """``print(..., flush=True)`` in a loop: every line arrives, in order, before ``idle``,
    in far fewer messages than flushes (a flush waits for the iopub thread at most once
    per FLUSH_GAP_S); a flush after a pause is still sent at once."""
    n = 20_000
    msgs: list[dict[str, Any]] = []
    code = f"for i in range({n}):\n    print(f'{{i:09d}}', flush=True)\nprint('end', flush=True)\n"
    reply = await asyncio.wait_for(pykernel.execute(code, msgs.append), 120)
    assert reply["status"] == "ok"
    streams = [m["content"]["text"] for m in msgs if m["msg_type"] == "stream"]
    assert "".join(streams) == "".join(f"{i:09d}\n" for i in range(n)) + "end\n"
    assert msgs[-1]["content"] == {"execution_state": "idle"}
    assert len(streams) <= n // 5, len(streams)

    # a lone flush before a long pause goes out during the pause, not at its end
    arrived: dict[str, float] = {}

    def seen(m: dict[str, Any]) -> None:
        if m["msg_type"] == "stream" or m["content"].get("execution_state") == "idle":
            arrived.setdefault(m["msg_type"], time.monotonic())

    code = "import time\nprint('a', flush=True)\ntime.sleep(2)\n"
    reply = await asyncio.wait_for(pykernel.execute(code, seen), 30)
    assert reply["status"] == "ok" and set(arrived) == {"stream", "status"}
    assert arrived["status"] - arrived["stream"] > 1.0  # sent before the 2 s sleep ended
