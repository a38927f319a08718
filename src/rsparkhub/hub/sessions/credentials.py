"""Open workspace sockets live no longer than the credential they were opened with.

A revocation made through the hub (sign-out, a password change or reset, a deleted API
token) closes its sockets at once (``Sessions.signed_out``). This watch catches the rest —
a token that expired, a user disabled or a password reset from the command line (another
process) — by checking every open socket's token every
``credential_check_s`` seconds, in one query.
"""

from __future__ import annotations

import asyncio
import logging

from rsparkhub.hub.auth import valid_token_ids
from rsparkhub.hub.db.engine import Database
from rsparkhub.hub.sessions.clients import Clients

log = logging.getLogger("rsparkhub.sessions")


class CredentialWatch:
    def __init__(self, db: Database, clients: Clients, interval_s: float) -> None:
        self.db = db
        self.clients = clients
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="credential-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def check(self) -> int:
        """Close the sockets whose credential no longer authenticates; how many."""
        ids = self.clients.token_ids()
        if not ids:
            return 0
        async with self.db.session() as db:
            valid = await valid_token_ids(db, ids)
        return await self.clients.signed_out(ids - valid)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                closed = await self.check()
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                log.exception("checking the open sockets' credentials failed")
                continue
            if closed:
                log.info("closed %d socket(s) whose login or token is no longer valid", closed)
