"""Presence on the workspace socket: who is attached and which file each of them shows
(the ``focus`` request), which is what the web client's Follow across files reads. A real
hub and real sockets; any member may say their file (a viewer too), a bad path is refused
with the request's id, and the file of a user with two windows is the one chosen last."""

from __future__ import annotations

import uuid
from typing import Any

from rsparkhub import protocol as P
from rsparkhub.client import Attachment, HubClient

from conftest import HubProcess


async def _presence(s: Attachment, want: dict[str, Any]) -> dict[str, Any]:
    """The next presence message with ``want``'s fields (earlier ones are skipped)."""
    async for msg in s.messages(timeout=30):
        if msg.get("type") == "presence" and all(msg.get(k) == v for k, v in want.items()):
            return msg
    raise AssertionError("unreachable")


async def test_focus_names_each_users_file(shared_hub: HubProcess, alice: str) -> None:
    vic = shared_hub.make_user("vic-presence")
    async with HubClient(shared_hub.url, alice) as a:
        wid = str((await a.ensure_workspace(f"presence-{uuid.uuid4().hex[:8]}"))["id"])
        await a.save_text(wid, "a.R", "1\n", 0)
        await a.save_text(wid, "b.R", "2\n", 0)
    with shared_hub.client(alice) as http:
        http.put(
            f"/api/workspaces/{wid}/members", json={"user": "vic-presence", "role": "viewer"}
        ).raise_for_status()

    async with (
        HubClient(shared_hub.url, alice) as a,
        HubClient(shared_hub.url, vic) as v,
        a.attach(wid) as sa,
        v.attach(wid) as sv,
    ):
        await _presence(sa, {"users": ["alice", "vic-presence"]})
        # A viewer says which file it shows: everybody hears it, nothing is refused.
        await sv.send(P.FocusRequest(id="f1", path="a.R"))
        await _presence(sa, {"files": {"vic-presence": "a.R"}})
        await _presence(sv, {"files": {"vic-presence": "a.R"}})
        await sa.send(P.FocusRequest(id="f2", path="./b.R"))  # normalised like every path
        await _presence(sv, {"files": {"alice": "b.R", "vic-presence": "a.R"}})

        # A second window of vic's chooses b.R: the later choice wins, and when that
        # window goes, vic's file is the first window's again.
        async with v.attach(wid) as sv2:
            await sv2.send(P.FocusRequest(id="f3", path="b.R"))
            await _presence(sa, {"files": {"alice": "b.R", "vic-presence": "b.R"}})
        await _presence(sa, {"files": {"alice": "b.R", "vic-presence": "a.R"}})

        # Closing the last file (null) leaves the user out of ``files``.
        await sv.send(P.FocusRequest(id="f4", path=None))
        await _presence(sa, {"users": ["alice", "vic-presence"], "files": {"alice": "b.R"}})

        # A path outside the workspace is refused, naming the request.
        await sa.conn.send('{"type": "focus", "id": "f5", "path": "../etc/passwd"}')
        async for msg in sa.messages(timeout=30):
            if msg.get("type") == "protocol_error":
                assert msg["request_id"] == "f5" and msg["code"] == "invalid_path", msg
                break
    # vic gone: only alice is left, with her file.
    async with HubClient(shared_hub.url, alice) as a, a.attach(wid) as sa:
        await sa.send(P.FocusRequest(id="f6", path="a.R"))
        await _presence(sa, {"users": ["alice"], "files": {"alice": "a.R"}})
