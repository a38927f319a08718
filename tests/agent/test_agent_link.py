"""The hub link of a real agent process: resending unacknowledged events after a dropped
connection, SIGTERM, ``stop``, and giving up when the hub stays away."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from rsparkhub import protocol as P

from hubpeer import HubPeer, start_agent, stdout_of, stop_agent

pytestmark = pytest.mark.asyncio


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def _kernel_pids(workdir: Path) -> list[int]:
    pid_file = workdir.parent / "agent-kernels.pid"
    return [int(x) for x in pid_file.read_text().split()] if pid_file.exists() else []


async def test_resend_of_unacked_events_after_redial(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    peer = HubPeer()
    await peer.start()
    proc = await start_agent(peer, workdir)
    try:
        done, _ = await peer.run(
            P.ExecuteRequest(id="warm", code="print('warm')", language="python"), 60
        )
        assert done.status == "ok"
        acked = peer.acked
        assert acked == max(peer.events)

        # from now on the hub does not acknowledge; output keeps coming after the drop
        peer.auto_ack = False
        code = "import time\nprint('a', flush=True)\ntime.sleep(1.0)\nprint('b', flush=True)"
        await peer.request(P.ExecuteRequest(id="slow", code=code, language="python"))
        await peer.wait_for(lambda: "a\n" in stdout_of(peer.request_events("slow")), 10)
        first = peer.connections[0]
        seen_on_first = [m.seq for m in first.received if isinstance(m, P.EventEnvelope)]
        unacked_on_first = [s for s in seen_on_first if s > acked]
        assert unacked_on_first

        peer.welcome_delay = 1.5  # the agent stays disconnected while 'b' is printed
        await peer.drop()
        await peer.wait_for(lambda: len(peer.connections) == 2, 10)
        second = peer.connections[1]
        assert second.hello.resumed is True
        assert second.hello.first_unacked_seq == acked + 1
        peer.auto_ack = True
        await peer.wait_for(lambda: peer.done_of("slow") is not None, 10)
        await asyncio.sleep(0.2)

        resent = [m.seq for m in second.received if isinstance(m, P.EventEnvelope)]
        last = max(peer.events)
        # exactly the events the hub did not acknowledge, in order, each once
        assert resent == list(range(acked + 1, last + 1))
        assert resent[: len(unacked_on_first)] == unacked_on_first
        for env in second.received:
            if isinstance(env, P.EventEnvelope) and env.seq in seen_on_first:
                assert env == peer.events[env.seq]
        assert stdout_of(peer.request_events("slow")) == "a\nb\n"
        assert peer.done_of("slow").status == "ok"
        # nothing before the acked seq came again
        assert not [s for s in resent if s <= acked]
    finally:
        assert await stop_agent(peer, proc) == 0
        await peer.close()


async def test_sigterm_stops_kernels_and_exits_zero(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    peer = HubPeer()
    await peer.start()
    proc = await start_agent(peer, workdir)
    try:
        done, _ = await peer.run(P.ExecuteRequest(id="b1", code="echo hi", language="bash"), 60)
        assert done.status == "ok"
        done, _ = await peer.run(P.ExecuteRequest(id="p1", code="1", language="python"), 60)
        pids = _kernel_pids(workdir)
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        assert (tmp_path / "runtime").is_dir()
        assert not any(p.name.startswith("kernel-") for p in workdir.iterdir())
        proc.send_signal(signal.SIGINT)  # ignored by the agent itself
        await asyncio.sleep(0.3)
        assert proc.returncode is None
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 20)
        assert code == 0
        for _ in range(50):
            if not any(_alive(p) for p in pids):
                break
            await asyncio.sleep(0.1)
        assert not any(_alive(p) for p in pids)
        assert _kernel_pids(workdir) == []
        stopped = [
            env.event
            for env in peer.events.values()
            if isinstance(env.event, P.SessionEvent) and env.event.state == "stopped"
        ]
        assert stopped
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await peer.close()


async def test_stop_message_exits_zero(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    peer = HubPeer()
    await peer.start()
    proc = await start_agent(peer, workdir)
    await peer.send(P.StopMessage(reason="test"))
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    await peer.close()


async def test_gives_up_when_hub_stays_away(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    peer = HubPeer()
    await peer.start()
    proc = await start_agent(peer, workdir, "--redial-timeout", "1")
    # garbage from the hub is ignored
    assert peer._ws is not None
    await peer._ws.send("this is not json")
    await peer._ws.send('{"type": "nonsense"}')
    reply = await peer.reply(P.PingRequest(id="still-alive"))
    assert reply.content == {"pong": True}
    await peer.close()
    assert await asyncio.wait_for(proc.wait(), 20) == 3
