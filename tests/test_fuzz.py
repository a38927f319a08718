"""Protocol fuzzing (hypothesis): random and malformed frames never crash the parsers, the
hub or the agent link; the session keeps working for everyone afterwards."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

from conftest import HubProcess

TYPES = [
    "execute",
    "interrupt",
    "restart",
    "complete",
    "is_complete",
    "ping",
    "hello",
    "events",
    "file_changed",
    "file_put",
    "stop",
    "request",
    "welcome",
    "ack",
    "",
    "EXECUTE",
    None,
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

messages = st.one_of(
    st.dictionaries(
        st.sampled_from(
            [
                "type",
                "id",
                "code",
                "path",
                "language",
                "mode",
                "cursor_pos",
                "events",
                "session_id",
                "seq",
                "event",
                "content_b64",
                "request",
                "since",
                "x",
            ]
        ),
        json_values,
        max_size=7,
    ).map(lambda d: {**d, "type": d.get("type", TYPES[hash(str(d)) % len(TYPES)])}),
    json_values,
)


def _frame(value: Any, raw: bytes | None) -> str | bytes:
    if raw is not None:
        return raw
    return json.dumps(value)


@given(value=messages, raw=st.one_of(st.none(), st.binary(max_size=64)))
@settings(max_examples=400, deadline=None)
def test_parsers_only_raise_message_error(value: Any, raw: bytes | None) -> None:
    frame = _frame(value, raw)
    for parse in (P.parse_client_request, P.parse_agent_message, P.parse_hub_to_agent):
        try:
            parse(frame)
        except P.MessageError as exc:
            assert exc.code and exc.message


async def test_hub_survives_random_client_frames(shared_hub: HubProcess, alice: str) -> None:
    async with HubClient(shared_hub.url, alice) as c:
        wid = (await c.ensure_workspace("fuzzed"))["id"]
        async with c.attach(wid) as watcher:
            frames: list[str | bytes] = []

            @given(
                value=messages,
                raw=st.one_of(st.none(), st.binary(max_size=64), st.text(max_size=64)),
            )
            @settings(
                max_examples=200,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def collect(value: Any, raw: Any) -> None:
                frames.append(raw if isinstance(raw, (bytes, str)) else json.dumps(value))

            collect()
            async with c.attach(wid) as fuzzer:
                for frame in frames:
                    if isinstance(frame, bytes):
                        frame = frame.decode("latin-1")
                    # Never send a real execute/interrupt/restart: only malformed variants.
                    try:
                        P.parse_client_request(frame)
                        continue  # a valid request: skip, we only want malformed ones
                    except P.MessageError:
                        pass
                    await fuzzer.conn.send(frame)
                errors = 0
                try:
                    async for msg in fuzzer.messages(timeout=5):
                        if msg.get("type") == "protocol_error":
                            errors += 1
                            assert msg["code"] and msg["message"]
                except TimeoutError:
                    pass
                assert errors > 0
                # Valid but odd requests reach the agent and must not hurt it either.
                odd = [
                    P.CompleteRequest(id="c", language="r", code="pri", cursor_pos=10**9),
                    P.IsCompleteRequest(id="i", language="bash", code=""),
                    P.InterruptRequest(id="n"),
                    P.RestartRequest(id="rs", language="python"),
                    P.PingRequest(id="p"),
                ]
                for req in odd:
                    await fuzzer.request(req, timeout=60)
                r = await fuzzer.run("", language="python")
                assert r.done is not None
                r = await fuzzer.run("1 + 1", language="r")
                assert r.ok
            r = await watcher.run("2 + 2", language="python")
            assert r.ok and r.results[0].data["text/plain"] == "4"
    with shared_hub.client(alice) as http:
        assert http.get("/api/me").status_code == 200


async def test_agent_endpoint_rejects_garbage(shared_hub: HubProcess) -> None:
    url = shared_hub.url.replace("http", "ws") + "/agent/ws"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "garbage"}):
        try:
            async with websockets.connect(url, additional_headers=headers) as ws:
                await ws.send("{}")
                await asyncio.wait_for(ws.recv(), 5)
            raise AssertionError("the hub accepted an agent without a valid token")
        except websockets.exceptions.ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code == 4401
        except websockets.exceptions.InvalidStatus:
            pass
