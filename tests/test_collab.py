"""Shared documents without a hub or a browser: a ``Room`` with its update log on disk and
a list standing in for the Files service (the saver records each version it is asked to
make). Clients are pycrdt docs speaking the same wire messages as the browser's Yjs. The
whole path (sockets, the real Files service, Chromium) is tests/test_web_coedit.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pycrdt import Doc, Text

from rsparkhub.hub.collab import Collab, wire
from rsparkhub.hub.collab.log import UpdateLog
from rsparkhub.hub.collab.room import Peer, Room
from rsparkhub.hub.collab.textdiff import apply_edits, text_edits
from rsparkhub.hub.errors import ApiError


class FakeFiles:
    """The Files service as a room sees it: versions of one file, with the base check."""

    def __init__(self, text: str) -> None:
        self.versions: list[tuple[str, str]] = [(text, "alice")]  # (text, author)

    async def save(self, _ws: str, _path: str, text: str, author: str, base: int) -> int:
        if base != len(self.versions):
            raise ApiError(409, "version_conflict", "changed elsewhere")
        self.versions.append((text, author))
        return len(self.versions)

    async def read(self, _ws: str, _path: str) -> tuple[str, int]:
        return self.versions[-1][0], len(self.versions)


def make_room(tmp: Path, files: FakeFiles, idle: float = 60) -> Room:
    return Room("w1", "a.R", UpdateLog(tmp / "a.ylog"), files.save, files.read, idle)


def client_edit(room: Room, edit: str, at: int | None = None) -> bytes:
    """An update a client makes on its own copy of the room's doc (inserting ``edit``)."""
    doc: Doc[Text] = Doc()
    doc.apply_update(room.doc.get_update())
    text = doc.get("content", type=Text)
    before = doc.get_state()
    text.insert(len(str(text).encode()) if at is None else at, edit)
    return doc.get_update(before)


def frames(peer: Peer) -> list[bytes | str]:
    out = []
    while not peer.queue.empty():
        item = peer.queue.get_nowait()
        assert not isinstance(item, tuple)
        out.append(item)
    return out


async def test_updates_survive_a_restart_and_become_a_version(tmp_path: Path) -> None:
    files = FakeFiles("x <- 1\n")
    room = make_room(tmp_path, files)
    await room.load("x <- 1\n", 1)
    alice, bob = Peer("alice", True), Peer("bob", True)
    room.join(alice)
    room.join(bob)
    frames(bob)
    await room.receive(alice, wire.sync(wire.UPDATE, client_edit(room, "y <- 2\n")))
    # bob got the update alice sent (after the hub logged it)
    got = [wire.parse(f) for f in frames(bob) if isinstance(f, bytes)]
    assert [m.step for m in got] == [wire.UPDATE]
    # the hub "dies" before any version was made: a new room has the edit from the log
    again = make_room(tmp_path, files)
    await again.load("x <- 1\n", 1)
    assert str(again.text) == "x <- 1\ny <- 2\n"
    assert await again.save(None) == 2  # the edit that reached the hub becomes a version
    assert files.versions[-1] == ("x <- 1\ny <- 2\n", "collaborators")


async def test_version_points_record_contributors(tmp_path: Path) -> None:
    files = FakeFiles("")
    room = make_room(tmp_path, files, idle=0.05)
    await room.load("", 1)
    alice, bob = Peer("alice", True), Peer("bob", True)
    room.join(alice)
    room.join(bob)
    await room.receive(alice, wire.sync(wire.UPDATE, client_edit(room, "a")))
    await room.receive(bob, wire.sync(wire.UPDATE, client_edit(room, "b")))
    for _ in range(100):  # idle save: 50 ms after the last edit
        if len(files.versions) == 2:
            break
        await asyncio.sleep(0.02)
    assert files.versions[-1] == ("ab", "alice, bob")
    versions = [json.loads(f) for f in frames(alice) if isinstance(f, str)]
    assert versions[-1]["version"] == 2
    # nothing changed: an explicit save makes no version
    assert await room.save("alice") == 2
    # the last editor leaving saves what is new
    await room.receive(bob, wire.sync(wire.UPDATE, client_edit(room, "c")))
    await room.leave(alice)
    await room.leave(bob)
    assert files.versions[-1] == ("abc", "bob")


async def test_a_viewer_cannot_push_an_update(tmp_path: Path) -> None:
    files = FakeFiles("secret\n")
    room = make_room(tmp_path, files)
    await room.load("secret\n", 1)
    viewer = Peer("carol", False)
    room.join(viewer)
    frames(viewer)
    await room.receive(viewer, wire.sync(wire.UPDATE, client_edit(room, "vandal ", at=0)))
    await room.receive(viewer, wire.sync(wire.STEP2, client_edit(room, "vandal ", at=0)))
    assert str(room.text) == "secret\n"
    errors = [json.loads(f) for f in frames(viewer) if isinstance(f, str)]
    assert [e["code"] for e in errors] == ["read_only", "read_only"]
    assert UpdateLog(tmp_path / "a.ylog").read().updates == [room.base.state]


async def test_a_file_changed_elsewhere_merges_with_unsaved_edits(tmp_path: Path) -> None:
    files = FakeFiles("line 1\nline 2\nline 3\n")
    room = make_room(tmp_path, files)
    await room.load(files.versions[0][0], 1)
    alice = Peer("alice", True)
    room.join(alice)
    # alice types into line 1 (not saved yet); code in the session rewrites line 3
    await room.receive(alice, wire.sync(wire.UPDATE, client_edit(room, " (alice)", at=6)))
    files.versions.append(("line 1\nline 2\nline 3 by code\nline 4\n", "session"))
    await room.merge_file(*await files.read("w1", "a.R"))
    merged = "line 1 (alice)\nline 2\nline 3 by code\nline 4\n"
    assert str(room.text) == merged
    assert room.base.version == 2
    assert await room.save("alice") == 3
    assert files.versions[-1][0] == merged


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _race(tmp: Path, name_the_base: bool) -> tuple[Room, FakeFiles]:
    """The session has v1 on disk and its code starts rewriting the file (it appends a
    line); meanwhile alice types a line and a version point lands (v2, which the session
    has not seen); then the code's write reaches the room (v3), naming what it overwrote
    — or, as before the fix, not."""
    files = FakeFiles("a <- 1\n")
    room = make_room(tmp, files)
    await room.load("a <- 1\n", 1)
    alice = Peer("alice", True)
    room.join(alice)
    on_disk = "a <- 1\n"  # what the session's code read and overwrote
    by_code = on_disk + "c <- 3\n"
    await room.receive(alice, wire.sync(wire.UPDATE, client_edit(room, "b <- 2\n")))
    assert await room.save(None) == 2  # the version point, landing mid-write
    files.versions.append((by_code, "session"))  # the Files service commits the code's write
    await room.merge_file(by_code, 3, sha(on_disk) if name_the_base else None)
    return room, files


async def test_code_rewriting_a_file_while_a_version_point_lands(tmp_path: Path) -> None:
    room, files = await _race(tmp_path / "named", name_the_base=True)
    merged = str(room.text)
    # alice's line (in version 2) and the code's, both inserted after line 1: the CRDT
    # orders two inserts at one place by its client ids
    assert merged in ("a <- 1\nb <- 2\nc <- 3\n", "a <- 1\nc <- 3\nb <- 2\n"), merged
    assert room.base.version == 3 and room.base_text == "a <- 1\nc <- 3\n"
    assert await room.save(None) == 4 and files.versions[-1][0] == merged
    # Merged against the last version point (the base before the fix, and still the
    # fallback for a base the room no longer holds), alice's line is lost: the code's text
    # lacks it, so the edits from version 2 to it delete it.
    room, _ = await _race(tmp_path / "unnamed", name_the_base=False)
    assert str(room.text) == "a <- 1\nc <- 3\n"


async def test_the_session_names_the_base_through_collab(tmp_path: Path) -> None:
    """Collab passes the base the Files service was told (``overwrote``) to the room."""
    files, listener = FakeFiles("x\n"), QuietListener()
    collab = OneFileCollab(tmp_path, files, listener)
    room = await collab.room("w1", "a.R")
    alice = Peer("alice", True)
    room.join(alice)
    await room.receive(alice, wire.sync(wire.UPDATE, client_edit(room, "typed\n")))
    assert await room.save(None) == 2
    files.versions.append(("x\nby code\n", "session"))
    f = SimpleNamespace(path="a.R", version=3)
    await collab.file_saved("w1", f, b"x\nby code\n", "session", overwrote=sha("x\n"))  # type: ignore[arg-type]
    for _ in range(100):
        if room.base.version == 3:
            break
        await asyncio.sleep(0.02)
    assert str(room.text) in ("x\ntyped\nby code\n", "x\nby code\ntyped\n"), str(room.text)
    assert listener.told == ["saved a.R"]


async def test_a_save_racing_another_save_merges_then_saves(tmp_path: Path) -> None:
    files = FakeFiles("a\n")
    room = make_room(tmp_path, files)
    await room.load("a\n", 1)
    alice = Peer("alice", True)
    room.join(alice)
    await room.receive(alice, wire.sync(wire.UPDATE, client_edit(room, "mine\n")))
    files.versions.append(("theirs\na\n", "bob"))  # saved over REST; not merged yet
    assert await room.save("alice") == 3
    assert files.versions[-1][0] == "theirs\na\nmine\n"


async def test_log_compaction_and_torn_records(tmp_path: Path) -> None:
    files = FakeFiles("")
    room = make_room(tmp_path, files)
    await room.load("", 1)
    alice = Peer("alice", True)
    room.join(alice)
    for i in range(3000):
        await room.receive(alice, wire.sync(wire.UPDATE, client_edit(room, f"{i % 10}" * 40)))
    size = (tmp_path / "a.ylog").stat().st_size
    assert size < 1_000_000, size  # compacted along the way: 120 kB of text
    with (tmp_path / "a.ylog").open("ab") as f:
        f.write(b"U\x00\x00\x10\x00partial")  # a hub killed mid-write
    again = make_room(tmp_path, files)
    await again.load("", 1)
    assert str(again.text) == str(room.text)


@pytest.mark.parametrize(
    ("old", "new"),
    [("", "abc"), ("abc", ""), ("héllo 😀\nb\n", "héllo 😀!\nc\nb\n"), ("a\nb\nc", "a\nc")],
)
def test_text_edits(old: str, new: str) -> None:
    edits = text_edits(old, new)
    assert apply_edits(old, edits) == new
    assert sum(e - s for s, e, _ in edits) <= len(old)


class QuietListener:
    """The sessions' fan-out, as Collab wraps it: records what it was told."""

    def __init__(self) -> None:
        self.told: list[str] = []

    async def file_saved(
        self, _ws: str, f: Any, _data: bytes, _origin: str, *, overwrote: str | None
    ) -> None:
        self.told.append(f"saved {f.path}")

    async def file_deleted(self, _ws: str, path: str, _origin: str) -> None:
        self.told.append(f"deleted {path}")


class OneFileCollab(Collab):
    """Collab over one in-memory file instead of the database (FakeFiles)."""

    def __init__(self, tmp: Path, files: FakeFiles, listener: QuietListener) -> None:
        super().__init__(tmp, None, None, listener, idle_save_s=60, unload_s=0.05)  # type: ignore[arg-type]
        self.fake = files

    async def _read(self, workspace_id: str, path: str) -> tuple[str, int]:
        return await self.fake.read(workspace_id, path)

    async def _save(self, ws: str, path: str, text: str, author: str, base: int) -> int:
        return await self.fake.save(ws, path, text, author, base)


def closed_with(peer: Peer) -> tuple[int, str] | None:
    while not peer.queue.empty():
        item = peer.queue.get_nowait()
        if isinstance(item, tuple):
            return item
    return None


async def test_rooms_unload_and_follow_the_files(tmp_path: Path) -> None:
    files, listener = FakeFiles("x\n"), QuietListener()
    collab = OneFileCollab(tmp_path, files, listener)
    room = await collab.room("w1", "a.R")
    log_file = collab.log_file("w1", "a.R")
    assert log_file.exists() and await collab.room("w1", "a.R") is room  # one room per file
    # the last socket left: the room is dropped a while later, its edits saved, log compacted
    alice = Peer("alice", True)
    room.join(alice)
    await room.receive(alice, wire.sync(wire.UPDATE, client_edit(room, "y\n")))
    room.peers.clear()
    collab._schedule_unload(("w1", "a.R"))
    for _ in range(100):
        if not collab.rooms:
            break
        await asyncio.sleep(0.02)
    assert not collab.rooms
    assert files.versions[-1] == ("x\ny\n", "alice")
    # loaded again: same history (the log), so a window that kept its doc merges cleanly
    again = await collab.room("w1", "a.R")
    assert again.base.epoch == room.base.epoch and str(again.text) == "x\ny\n"
    # access: a role keeps the socket (with the role's rights), no role closes it
    bob = Peer("bob", True, token_id="t-bob")
    again.join(bob)
    assert collab.access_changed("bob", "w1", "viewer") == 0 and not bob.can_write
    assert collab.signed_out({"t-other"}) == 0
    assert collab.access_changed("bob", "w1", None) == 1
    assert closed_with(bob) == (4403, "forbidden: You no longer have access to this workspace.")
    # the file deleted: sockets closed, the log removed, the sessions still told
    carol = Peer("carol", True)
    again.join(carol)
    await collab.file_deleted("w1", "a.R", "client")
    code = closed_with(carol)
    assert code is not None and code[0] == 4404
    assert not log_file.exists() and not collab.rooms
    assert listener.told == ["deleted a.R"]


async def test_a_deleted_workspace_takes_its_documents(tmp_path: Path) -> None:
    files = FakeFiles("x\n")
    collab = OneFileCollab(tmp_path, files, QuietListener())
    room = await collab.room("w1", "a.R")
    alice = Peer("alice", True)
    room.join(alice)
    await room.receive(alice, wire.sync(wire.UPDATE, client_edit(room, "unsaved\n")))
    await collab.workspace_deleted("w1")
    code = closed_with(alice)
    assert code is not None and code[0] == 4404
    await room.leave(alice)  # the socket's end: nothing is saved into a deleted workspace
    assert len(files.versions) == 1
    assert not (tmp_path / "collab" / "w1").exists() and not collab.rooms
