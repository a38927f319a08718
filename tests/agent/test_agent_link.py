"""The hub link of a real agent process, against the protocol peer (``hubpeer.py`` says why
these cases cannot use the real hub): resending unacknowledged events after a dropped
connection, surviving random and malformed frames from the hub, and giving up with exit
code 3 when the hub stays away. SIGTERM and ``stop`` are tested through the real hub
(``test_agent_py_bash.py``, ``tests/test_sessions.py``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rsparkhub import protocol as P

from hubpeer import HubPeer, start_agent, stdout_of, stop_agent


@pytest.mark.asyncio
async def test_resend_of_unacked_events_after_redial(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    peer = HubPeer()
    await peer.start()
    proc = await start_agent(peer, workdir, "--languages", "python")
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


FRAME_TYPES = [
    "welcome",
    "ack",
    "file_put",
    "file_delete",
    "request",
    "forwarded_request",
    "events",
    "hello",
    "",
    None,
    "ACK",
]  # never "stop": a well-formed one rightly ends the agent
REQUEST_TYPES = ["ping", "complete", "is_complete", "interrupt", "execute", "nonsense", None]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
# Requests stay harmless: no valid language, so nothing reaches (or starts) a kernel.
requests = st.fixed_dictionaries(
    {"type": st.sampled_from(REQUEST_TYPES), "id": json_values},
    optional={
        "language": st.sampled_from(["julia", "", "R", 5, None]),
        "code": json_values,
        "cursor_pos": json_values,
        "path": json_values,
    },
)
frame_values = st.fixed_dictionaries(
    {"type": st.sampled_from(FRAME_TYPES)},
    optional={
        "seq": st.integers(-5, 2**64) | json_values,
        "acked_seq": st.integers(-5, 2**64) | json_values,
        "manifest": json_values,
        "path": st.sampled_from(["", ".", "..", "../x", "/etc/passwd", "a/../../b", "ok.txt"])
        | json_values,
        "content_b64": st.sampled_from(["aGk=", "!!", ""]) | json_values,
        "sha256": st.text(max_size=64),
        "user": json_values,
        "request": requests | json_values,
    },
)
frames = st.lists(
    st.one_of(
        frame_values.map(json.dumps),
        json_values.map(json.dumps),
        st.text(max_size=200),
        st.binary(max_size=200),
    ),
    min_size=1,
    max_size=5,
)


def test_random_frames_from_hub_never_kill_the_agent(tmp_path: Path) -> None:
    """Whatever the hub sends, the agent keeps serving: after each batch of random or
    malformed frames a ping forwarded through the peer still gets its reply. Then the peer
    goes away for good and the agent gives up with exit code 3."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    loop = asyncio.new_event_loop()
    peer = HubPeer()
    loop.run_until_complete(peer.start())
    proc = loop.run_until_complete(
        start_agent(peer, workdir, "--redial-timeout", "1", "--languages", "python")
    )
    pings = iter(range(10**6))

    async def send_then_ping(batch: list[str | bytes]) -> None:
        ws = peer._ws
        assert ws is not None and proc.returncode is None
        for frame in batch:
            await ws.send(frame)
        reply = await peer.reply(P.PingRequest(id=f"ping-{next(pings)}"), 10)
        assert reply.ok and reply.content == {"pong": True}
        assert peer.connections[-1] is peer.connections[0]  # the agent never re-dialled
        assert proc.returncode is None

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
    @given(frames)
    def survives(batch: list[str | bytes]) -> None:
        loop.run_until_complete(send_then_ping(batch))

    try:
        survives()
        loop.run_until_complete(peer.close())
        assert loop.run_until_complete(asyncio.wait_for(proc.wait(), 20)) == 3
    finally:
        if proc.returncode is None:
            proc.kill()
            loop.run_until_complete(proc.wait())
        loop.run_until_complete(peer.close())
        loop.close()
