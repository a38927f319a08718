"""One shared document: the hub's Y doc of a workspace file, the editors connected to it,
its update log, and its version points.

The doc has one ``Text`` named ``content``. An update from an editor is applied, appended
to the log and only then passed to the other editors: what another window shows, the hub
has on disk. ``base`` is the file version the doc last matched and the doc's state then; a
file changed outside the editor (a REST save, code in the session) is merged as the edits
from the base's text to the new text, made on a copy of the base state, so the CRDT joins
them with what is being typed. Code in the session names the content it overwrote
(``overwrote``, its sha256): when a version point landed while the code was writing, the
change is made on that older base instead (the room keeps its last few bases), so the
version point's edits stay. Saving (explicit, idle, last editor leaving) goes through
``Saver`` (the Files service) and records the editors who changed the text since the last
version. Peers (sockets) are served by service.py; this module never touches the database."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pycrdt import Doc, Text

from rsparkhub.hub.collab import wire
from rsparkhub.hub.collab.log import Base, UpdateLog
from rsparkhub.hub.collab.textdiff import Edit, text_edits
from rsparkhub.hub.errors import ApiError

log = logging.getLogger("rsparkhub.hub.collab")

# (workspace id, path, text, author, base version) → the new file version; raises ApiError
# version_conflict when the file is no longer at the base version
Saver = Callable[[str, str, str, str, int], Awaitable[int]]
# (workspace id, path) → the file's current text and version
Loader = Callable[[str, str], Awaitable[tuple[str, int]]]

QUEUE_LIMIT = 2000  # frames waiting for a slow socket before it is dropped (it resyncs)
# Bases kept (by the sha256 of their text) to merge a session's write against the content
# it overwrote; a session's disk lags the version points by one or two at most.
RECENT_BASES = 4


@dataclass(eq=False)
class Peer:
    """One editor's socket, as the room sees it: frames go out through a bounded queue."""

    user: str
    can_write: bool
    token_id: str | None = None
    awareness: dict[int, tuple[int, str]] = field(default_factory=dict)
    queue: asyncio.Queue[bytes | str | tuple[int, str]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT)
    )
    closed: bool = False

    def send(self, frame: bytes | str) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.close(4408, "too_slow: the editor fell behind; it reconnects and catches up.")

    def send_json(self, msg: dict[str, object]) -> None:
        self.send(json.dumps(msg))

    def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait((code, reason))


def _edit_text(text: Text, old: str, edits: list[Edit]) -> None:
    """Make ``edits`` (code points of ``old``, which ``text`` holds) on ``text``: pycrdt
    indexes text in UTF-8 bytes."""
    for start, end, insert in reversed(edits):
        b_start = len(old[:start].encode())
        b_end = b_start + len(old[start:end].encode())
        if b_end > b_start:
            del text[b_start:b_end]
        if insert:
            text.insert(b_start, insert)


def _doc(state: bytes = b"") -> Doc[Text]:
    doc: Doc[Text] = Doc()
    if state:
        doc.apply_update(state)
    return doc


class Room:
    def __init__(
        self,
        workspace_id: str,
        path: str,
        updates: UpdateLog,
        saver: Saver,
        loader: Loader,
        idle_save_s: float,
    ) -> None:
        self.workspace_id, self.path = workspace_id, path
        self.updates = updates
        self.saver = saver
        self.loader = loader
        self.idle_save_s = idle_save_s
        self.doc = _doc()
        self.text = self.doc.get("content", type=Text)
        self.base = Base(0, b"", "")
        self.base_text = ""
        self.base_sv = ""
        self.recent_bases: dict[str, bytes] = {}  # sha256 of a base's text → its state
        self.peers: list[Peer] = []
        self.contributors: set[str] = set()
        self.saving: str | None = None  # the text being saved (its file_saved is ours)
        self.gone = False  # the file or its workspace was deleted: nothing more to save
        self._lock = asyncio.Lock()  # applying updates: one at a time, in order
        self._save_lock = asyncio.Lock()  # version points and merges
        self._idle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[object]] = set()

    # ----------------------------------------------------------------- loading

    async def load(self, file_text: str, file_version: int) -> None:
        """From the log when there is one (with the edits not yet saved), else from the file;
        a file changed since the log's base is merged in."""
        loaded = await asyncio.to_thread(self.updates.read)
        if loaded.base is None:
            self.base.epoch = secrets.token_hex(8)
            with self.doc.transaction():
                self.text.insert(0, file_text)
            self._set_base(file_version, self.doc.get_update(), file_text, self.doc.get_state())
            await asyncio.to_thread(
                self.updates.compact, self.doc.get_update(), self.base, self.path
            )
            return
        for update in loaded.updates:
            self.doc.apply_update(update)
        self.base.epoch = loaded.base.epoch
        fork = _doc(loaded.base.state)
        base_text = str(fork.get("content", type=Text))
        self._set_base(loaded.base.version, loaded.base.state, base_text, fork.get_state())
        if file_version != self.base.version:
            await self.merge_file(file_text, file_version)
        if str(self.text) != self.base_text:
            self.schedule_save()  # edits that reached the hub before it stopped

    def _set_base(self, version: int, state: bytes, text: str, vector: bytes) -> None:
        """``state`` and its state ``vector`` as the base of ``version`` (whose text is
        ``text``)."""
        self.base = Base(version, state, self.base.epoch)
        self.base_text = text
        self.base_sv = base64.b64encode(vector).decode()
        key = hashlib.sha256(text.encode()).hexdigest()
        self.recent_bases.pop(key, None)
        self.recent_bases[key] = state
        while len(self.recent_bases) > RECENT_BASES:
            del self.recent_bases[next(iter(self.recent_bases))]

    # ----------------------------------------------------------------- peers

    def join(self, peer: Peer) -> None:
        self.peers.append(peer)
        peer.send_json(self.version_message())
        peer.send(wire.sync(wire.STEP1, self.doc.get_state()))
        states = {c: s for p in self.peers if p is not peer for c, s in p.awareness.items()}
        if states:
            peer.send(wire.awareness(wire.awareness_update(states)))

    async def leave(self, peer: Peer) -> None:
        if peer in self.peers:
            self.peers.remove(peer)
        if peer.awareness:  # their cursors go away everywhere
            gone = {c: (clock + 1, "null") for c, (clock, _) in peer.awareness.items()}
            self._broadcast(wire.awareness(wire.awareness_update(gone)), skip=peer)
        if not self.gone and not any(p.can_write for p in self.peers):
            await self.save(None)  # the last editor left: what they wrote is a version

    def version_message(self) -> dict[str, object]:
        return {
            "type": "version",
            "version": self.base.version,
            "state_vector": self.base_sv,
            "epoch": self.base.epoch,
        }

    def _broadcast(self, frame: bytes | str, skip: Peer | None = None) -> None:
        for p in self.peers:
            if p is not skip:
                p.send(frame)

    # ----------------------------------------------------------------- messages

    async def receive(self, peer: Peer, frame: bytes) -> None:
        """One binary frame from ``peer`` (raises wire.BadMessage)."""
        msg = wire.parse(frame)
        if msg.kind == wire.AWARENESS:
            states = wire.awareness_states(msg.payload)
            for client, state in states.items():
                if state[1] == "null":
                    peer.awareness.pop(client, None)
                else:
                    peer.awareness[client] = state
            self._broadcast(frame, skip=peer)
        elif msg.step == wire.STEP1:
            peer.send(wire.sync(wire.STEP2, self.doc.get_update(msg.payload)))
        elif msg.payload != wire.EMPTY_UPDATE:
            if not peer.can_write:
                peer.send_json(
                    {
                        "type": "error",
                        "code": "read_only",
                        "message": "You can view this workspace but not edit it; your edit "
                        "was not applied.",
                    }
                )
                return
            await self.apply(msg.payload, peer)

    async def apply(self, update: bytes, peer: Peer | None) -> None:
        async with self._lock:
            # (no "already known" shortcut: a deletion leaves the state vector as it was)
            self.doc.apply_update(update)
            await asyncio.to_thread(self.updates.append_update, update)
            self._broadcast(wire.sync(wire.UPDATE, update), skip=peer)
            if peer is not None:
                self.contributors.add(peer.user)
            if self.updates.needs_compaction():
                await asyncio.to_thread(
                    self.updates.compact, self.doc.get_update(), self.base, self.path
                )
        if peer is not None:
            self.schedule_save()

    # ----------------------------------------------------------------- versions

    def schedule_save(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(self.idle_save_s, self._idle_save)

    def _idle_save(self) -> None:
        self._idle = None
        if self.gone:
            return
        task: asyncio.Task[object] = asyncio.create_task(self._save_logged())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _save_logged(self) -> object:
        try:
            return await self.save(None)
        except Exception:  # the next edit or the last editor leaving tries again
            log.exception("saving %s of workspace %s failed", self.path, self.workspace_id)
            return None

    async def save(self, by: str | None) -> int:
        """Make the text a file version (unless it is the current one); returns the
        version. ``by``: who asked (an explicit save), else the contributors. A file saved
        elsewhere meanwhile is merged first, then the merge is saved."""
        for attempt in range(3):
            try:
                return await self._save_once(by)
            except ApiError as exc:
                if exc.code != "version_conflict" or attempt == 2:
                    raise
            text, version = await self.loader(self.workspace_id, self.path)
            await self.merge_file(text, version)
        raise AssertionError("unreachable")

    async def _save_once(self, by: str | None) -> int:
        async with self._save_lock:
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
            text, state, vector = str(self.text), self.doc.get_update(), self.doc.get_state()
            if text == self.base_text:
                return self.base.version
            names = sorted(self.contributors | ({by} if by else set())) or ["collaborators"]
            self.contributors.clear()
            self.saving = text
            try:
                version = await self.saver(
                    self.workspace_id, self.path, text, ", ".join(names)[:64], self.base.version
                )
            except BaseException:
                self.contributors.update(names)
                raise
            finally:
                self.saving = None
            self._set_base(version, state, text, vector)
            await asyncio.to_thread(self.updates.append_base, self.base, self.path)
            self._broadcast(json.dumps(self.version_message()))
            return version

    async def merge_file(self, text: str, version: int, overwrote: str | None = None) -> None:
        """The file was changed outside the editor (now ``text`` as ``version``): its changes
        since the base join the document as one transaction of minimal edits. ``overwrote``
        (a sha256): the content the writer replaced — code in the session names what it had
        on disk. When that is an earlier base (a version point landed meanwhile), the edits
        are made from there, so the version point's edits are not undone; an unknown one
        (not one of the last bases) falls back to the current base."""
        async with self._save_lock:
            if version <= self.base.version:
                return  # our own save, or one this room has seen
            fork = _doc(self.recent_bases.get(overwrote or "", self.base.state))
            fork_text = fork.get("content", type=Text)
            before = fork.get_state()
            old = str(fork_text)
            edits = await asyncio.to_thread(text_edits, old, text)
            if edits:
                with fork.transaction():
                    _edit_text(fork_text, old, edits)
                await self.apply(fork.get_update(before), None)
            self._set_base(version, fork.get_update(), text, fork.get_state())
            await asyncio.to_thread(self.updates.append_base, self.base, self.path)
            self._broadcast(json.dumps(self.version_message()))
        if str(self.text) != self.base_text:
            self.schedule_save()  # the merge of their change and the edits here

    # ----------------------------------------------------------------- the end

    async def compact(self) -> None:
        async with self._lock:
            await asyncio.to_thread(
                self.updates.compact, self.doc.get_update(), self.base, self.path
            )

    def close_all(self, code: int, reason: str) -> None:
        for p in list(self.peers):
            p.close(code, reason)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
