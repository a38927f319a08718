"""Which host uid/gid each user's sandboxes run under.

Owns: giving a user a uid from ``session_uid_min..session_uid_max`` the first time one is
needed, recording it in ``users.uid`` (so it is stable across hub restarts and never given
to anyone else), and skipping uids the host already uses. The gid equals the uid: every
user has a group of their own. A hub that is not root cannot switch uid: every sandbox
then runs under the hub's own uid and gid (``Sandboxes.mode`` says so).

Must not: start processes or touch files (sandbox/ does).
"""

from __future__ import annotations

import asyncio
import os
import pwd

from sqlalchemy import func, select

from rsparkhub.config import Settings
from rsparkhub.hub.db.engine import Database
from rsparkhub.hub.db.models import User
from rsparkhub.hub.sandbox import Identity


class NoUidLeft(Exception):
    """The configured uid range is used up."""


def _host_uses(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


class Identities:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        # A root hub switches to these uids; pods run under them (runAsUser) whatever the
        # hub's own uid.
        self.switches = os.geteuid() == 0 or settings.spawner == "kubernetes"
        self._cache: dict[str, Identity] = {}
        self._lock = asyncio.Lock()

    async def for_user(self, user_id: str) -> Identity:
        if not self.switches:
            return Identity(os.getuid(), os.getgid())
        if user_id in self._cache:
            return self._cache[user_id]
        async with self._lock, self.db.session() as db:
            user = await db.get(User, user_id)
            if user is None:
                raise KeyError(user_id)
            if user.uid is None:
                user.uid = await self._next_free(db)
                await db.commit()
            ident = Identity(user.uid, user.uid)
        self._cache[user_id] = ident
        return ident

    async def _next_free(self, db: object) -> int:
        lo, hi = self.settings.session_uid_min, self.settings.session_uid_max
        top = (await db.execute(select(func.max(User.uid)))).scalar()  # type: ignore[attr-defined]
        start = max(lo, (top or lo - 1) + 1)
        for uid in range(start, hi + 1):
            if uid != 0 and not _host_uses(uid):
                return uid
        raise NoUidLeft(f"no free uid left in {lo}..{hi}; raise session_uid_max to add more users")


def shared_uid_warning(settings: Settings, users: int) -> str | None:
    """What to tell whoever adds a second user to a hub that cannot give them uids of
    their own (a hub that is not root, running local sessions)."""
    if users < 2 or os.geteuid() == 0 or settings.spawner != "local":
        return None
    return (
        f"This hub runs as uid {os.getuid()}, not root: every user's sessions run under that "
        "same uid, kept apart only by namespaces (no per-user uid, no cgroup limits unless "
        "delegated). Run the hub as root to give each user a uid of their own; see "
        "docs/security.md."
    )
