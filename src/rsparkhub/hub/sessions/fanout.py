"""Committed file changes, told to whoever must know: the workspace's running session (a
save by a client is put into its working directory; a change made by its own code is
not sent back) and every client of the workspace (``files_changed``)."""

from __future__ import annotations

import base64
import logging

from rsparkhub import protocol as P
from rsparkhub.hub.db.models import File
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.files import Origin
from rsparkhub.hub.sessions.clients import Clients
from rsparkhub.hub.sessions.live import Registry

log = logging.getLogger("rsparkhub.sessions")


class FileFanout:
    def __init__(self, registry: Registry, clients: Clients) -> None:
        self.registry = registry
        self.clients = clients

    async def file_saved(
        self, workspace_id: str, f: File, data: bytes, origin: Origin, *, overwrote: str | None
    ) -> None:
        if origin == "client":
            put = P.FilePut(
                path=f.path, content_b64=base64.b64encode(data).decode(), sha256=f.sha256
            )
            await self._to_session(workspace_id, P.dump(put))
        msg = P.FilesChanged(
            workspace_id=workspace_id,
            changed=[P.ChangedFile(path=f.path, version=f.version, size=f.size, sha256=f.sha256)],
        )
        await self.clients.broadcast(workspace_id, P.dump(msg))

    async def file_deleted(self, workspace_id: str, path: str, origin: Origin) -> None:
        if origin == "client":
            await self._to_session(workspace_id, P.dump(P.FileDelete(path=path)))
        await self.clients.broadcast(
            workspace_id, P.dump(P.FilesChanged(workspace_id=workspace_id, deleted=[path]))
        )

    async def _to_session(self, workspace_id: str, text: str) -> None:
        live = self.registry.current(workspace_id)
        if live is None or not live.alive:
            return  # the next session gets every file at its start
        try:
            await live.send_agent(text)
        except ApiError as exc:
            # Saved all the same; the agent, once back, asks for what it missed (FileWant).
            log.warning("session %s: file change not queued: %s", live.id, exc.message)
