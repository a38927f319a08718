"""The hub's shared documents: one ``Room`` per (workspace, path) while someone edits it,
the document sockets, and the hooks that keep rooms in step with the rest of the hub —
file changes (it wraps the Files service's listener), access changes, sign-outs and
credentials that stopped being valid.

A room is loaded when its first socket opens and unloaded (its log compacted) a while
after its last socket closed, so the hub holds only the documents being edited. The
update logs live in ``DATA_DIR/collab/<workspace id>/<sha256 of the path>.ylog``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import shutil
from pathlib import Path

from fastapi import WebSocket

from rsparkhub.hub.auth import valid_token_ids
from rsparkhub.hub.blobs import BlobStore
from rsparkhub.hub.collab import wire
from rsparkhub.hub.collab.log import UpdateLog
from rsparkhub.hub.collab.room import Peer, Room
from rsparkhub.hub.db.engine import Database
from rsparkhub.hub.db.models import File
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.files import FileListener, Files, Origin, get_file

log = logging.getLogger("rsparkhub.hub.collab")

Key = tuple[str, str]


class Collab:
    def __init__(
        self,
        data_dir: Path,
        db: Database,
        blobs: BlobStore,
        inner: FileListener,
        *,
        idle_save_s: float = 2.0,
        unload_s: float = 30.0,
    ) -> None:
        self.root = data_dir / "collab"
        self.db, self.blobs, self.inner = db, blobs, inner
        self.idle_save_s, self.unload_s = idle_save_s, unload_s
        self.files: Files | None = None  # set by build_hub (Files is built with this listener)
        self.rooms: dict[Key, Room] = {}
        self._load_lock = asyncio.Lock()
        self._unload: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._watch: asyncio.Task[None] | None = None

    def log_file(self, workspace_id: str, path: str) -> Path:
        name = hashlib.sha256(path.encode()).hexdigest()[:40]
        return self.root / workspace_id / f"{name}.ylog"

    # ----------------------------------------------------------------- files

    async def _read(self, workspace_id: str, path: str) -> tuple[str, int]:
        async with self.db.session() as db:
            f = await get_file(db, workspace_id, path)
        data = await self.blobs.get(f.sha256)
        if b"\x00" in data[:8192]:
            raise ApiError(415, "binary_file", f"'{path}' is a binary file; it cannot be edited.")
        try:
            return data.decode("utf-8"), f.version
        except UnicodeDecodeError:
            raise ApiError(415, "binary_file", f"'{path}' is not UTF-8 text.") from None

    async def _save(self, workspace_id: str, path: str, text: str, author: str, base: int) -> int:
        assert self.files is not None
        async with self.db.session() as db:
            saved = await self.files.save(db, workspace_id, path, text.encode(), author, base)
        return saved.file.version

    async def file_saved(
        self, workspace_id: str, f: File, data: bytes, origin: Origin, *, overwrote: str | None
    ) -> None:
        await self.inner.file_saved(workspace_id, f, data, origin, overwrote=overwrote)
        room = self.rooms.get((workspace_id, f.path))
        if room is None or (room.saving is not None and data == room.saving.encode()):
            return  # nobody edits it (a room loads the file when it opens), or our own save
        # Not awaited: the save that told us may be the room's own (holding its save lock).
        text = data.decode("utf-8", errors="replace")
        self._spawn(room.merge_file(text, f.version, overwrote))

    async def file_deleted(self, workspace_id: str, path: str, origin: Origin) -> None:
        await self.inner.file_deleted(workspace_id, path, origin)
        room = self.rooms.pop((workspace_id, path), None)
        if room is not None:
            room.gone = True
            room.close_all(4404, f"file_deleted: '{path}' was deleted or renamed.")
        await asyncio.to_thread(self.log_file(workspace_id, path).unlink, missing_ok=True)

    async def workspace_deleted(self, workspace_id: str) -> None:
        """Its documents closed (4404) and forgotten, their logs removed."""
        for key in [k for k in self.rooms if k[0] == workspace_id]:
            room = self.rooms.pop(key)
            room.gone = True
            room.close_all(4404, "workspace_deleted: The workspace was deleted.")
            timer = self._unload.pop(key, None)
            if timer is not None:
                timer.cancel()
        await asyncio.to_thread(shutil.rmtree, self.root / workspace_id, True)

    # ----------------------------------------------------------------- access

    def access_changed(
        self, user: str, workspace_id: str | None = None, role: str | None = None
    ) -> int:
        """Like Clients.access_changed: a role keeps the sockets with its rights, no role
        closes them (4403). Returns how many were closed."""
        closed = 0
        for (wid, _), room in list(self.rooms.items()):
            if workspace_id is not None and wid != workspace_id:
                continue
            for peer in room.peers:
                if peer.user != user:
                    continue
                if role is not None:
                    peer.can_write = role in ("owner", "editor")
                    peer.send_json({"type": "role", "can_write": peer.can_write})
                else:
                    peer.close(4403, "forbidden: You no longer have access to this workspace.")
                    closed += 1
        return closed

    def start(self, credential_check_s: float) -> None:
        """Check the open sockets' credentials every ``credential_check_s`` (as the
        workspace sockets' CredentialWatch does): expired tokens, users disabled or reset
        from the command line."""
        self._watch = asyncio.create_task(self._watch_credentials(credential_check_s))

    async def check_credentials(self) -> int:
        ids = {p.token_id for r in self.rooms.values() for p in r.peers if p.token_id}
        if not ids:
            return 0
        async with self.db.session() as db:
            valid = await valid_token_ids(db, ids)
        return self.signed_out(ids - valid)

    async def _watch_credentials(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.check_credentials()
            except Exception:  # logged; the next round tries again
                log.exception("checking the document sockets' credentials failed")

    def signed_out(self, token_ids: set[str]) -> int:
        closed = 0
        for room in self.rooms.values():
            for peer in room.peers:
                if peer.token_id and peer.token_id in token_ids:
                    peer.close(4401, "signed_out: Your sign-in ended; sign in again.")
                    closed += 1
        return closed

    # ----------------------------------------------------------------- rooms

    async def room(self, workspace_id: str, path: str) -> Room:
        key = (workspace_id, path)
        async with self._load_lock:
            timer = self._unload.pop(key, None)
            if timer is not None:
                timer.cancel()
            room = self.rooms.get(key)
            if room is None:
                text, version = await self._read(workspace_id, path)
                room = Room(
                    workspace_id,
                    path,
                    UpdateLog(self.log_file(workspace_id, path)),
                    self._save,
                    self._read,
                    self.idle_save_s,
                )
                await room.load(text, version)
                self.rooms[key] = room
            return room

    def _schedule_unload(self, key: Key) -> None:
        old = self._unload.pop(key, None)
        if old is not None:
            old.cancel()
        self._unload[key] = asyncio.get_running_loop().call_later(
            self.unload_s, lambda: self._spawn(self._unload_room(key))
        )

    async def _unload_room(self, key: Key) -> None:
        async with self._load_lock:
            self._unload.pop(key, None)
            room = self.rooms.get(key)
            if room is None or room.peers:
                return
            del self.rooms[key]
        await room.save(None)
        await room.compact()

    async def close(self) -> None:
        """Hub shutdown: every socket closed, every room's log compacted (edits in no
        version become one when the room is next loaded)."""
        if self._watch is not None:
            self._watch.cancel()
        for timer in self._unload.values():
            timer.cancel()
        for room in list(self.rooms.values()):
            room.close_all(1001, "hub_stopping: The hub is restarting; reconnecting.")
            with contextlib.suppress(Exception):
                await room.compact()

    def _spawn(self, coro: object) -> None:
        async def logged() -> object:
            try:
                return await coro  # type: ignore[misc]
            except Exception:
                log.exception("shared document task failed")
                return None

        task: asyncio.Task[object] = asyncio.create_task(logged())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----------------------------------------------------------------- sockets

    async def serve(
        self,
        websocket: WebSocket,
        workspace_id: str,
        path: str,
        user: str,
        can_write: bool,
        token_id: str | None,
    ) -> None:
        """One accepted document socket, until either side closes it."""
        try:
            room = await self.room(workspace_id, path)
        except ApiError as exc:
            reason = f"{exc.code}: {exc.message}".encode()[:120].decode(errors="ignore")
            await websocket.close(code=4000 + exc.status, reason=reason)
            return
        peer = Peer(user, can_write, token_id)
        room.join(peer)
        pump = asyncio.create_task(_pump(websocket, peer))
        try:
            while not peer.closed:
                msg = await websocket.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                if msg.get("bytes") is not None:
                    try:
                        await room.receive(peer, msg["bytes"])
                    except wire.BadMessage as exc:
                        peer.close(4400, f"bad_message: {exc}")
                elif msg.get("text") is not None:
                    await self._control(room, peer, msg["text"])
        finally:
            peer.close(1000, "")
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(pump, 5)
            try:
                await room.leave(peer)
            except Exception:
                log.exception("saving %s after its last editor left failed", path)
            if not room.peers and self.rooms.get((workspace_id, path)) is room:
                self._schedule_unload((workspace_id, path))

    async def _control(self, room: Room, peer: Peer, text: str) -> None:
        """A JSON request: ``{"type": "save", "id": n}`` (the only one)."""
        try:
            req = json.loads(text)
            rid = req["id"]
            kind = req["type"]
        except (ValueError, KeyError, TypeError):
            peer.close(4400, "bad_message: a text frame must be a JSON request with type and id.")
            return
        if kind != "save":
            peer.send_json({"type": "error", "id": rid, "code": "unknown_request",
                            "message": f"Unknown request '{kind}'."})  # fmt: skip
        elif not peer.can_write:
            peer.send_json({"type": "error", "id": rid, "code": "read_only",
                            "message": "You can view this workspace but not save in it."})  # fmt: skip
        else:
            try:
                version = await room.save(peer.user)
            except ApiError as exc:
                peer.send_json({"type": "error", "id": rid, "code": exc.code,
                                "message": exc.message})  # fmt: skip
                return
            peer.send_json({"type": "saved", "id": rid, "version": version})


async def _pump(websocket: WebSocket, peer: Peer) -> None:
    """Send the peer's queued frames in order; a (code, reason) item closes the socket."""
    while True:
        item = await peer.queue.get()
        try:
            if isinstance(item, tuple):
                await websocket.close(code=item[0], reason=item[1])
                return
            if isinstance(item, bytes):
                await websocket.send_bytes(item)
            else:
                await websocket.send_text(item)
        except Exception:  # the socket is gone: the receive loop ends too
            peer.closed = True
            return
