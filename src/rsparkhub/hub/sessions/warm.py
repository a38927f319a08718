"""The warm pool: sessions started ahead for a user, handed to their next session.

A new session spends most of its first second starting: the sandbox, the agent's imports,
the kernel (docs/architecture.md, "Kernel prestart"). With ``session_pool_size`` N, the
hub keeps N sessions ready for each user who has logged in or started one: sandboxed under that user's
own uid, agent up, ``session_pool_kernels`` started, **no workspace and no token** — the
agent dials nobody until it is handed out (agent/handout.py). Their session ids are
chosen when they start, so everything named after the id (directory, cgroup, disk, log,
Spark session) is already right.

The pool is never shared across users: an entry belongs to one user from its start (a
uid cannot change later), and holds nothing of any workspace until hand-out. At hand-out
the spawner binds the workspace's package overlay and declared environments into the
running sandbox and passes the agent its token and the workspace's environment, and the
agent resets its kernels to it. A start that asks for what the entry lacks (a service
port it cannot reach), or an entry that died, gets a cold start instead, with the same
session id.

Owns: the entries, their filling, hand-out and expiry. Must not: run an entry for any user
but its owner, or keep one beyond ``session_pool_idle_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsparkhub.hub.auth import new_secret
from rsparkhub.hub.db.models import User, new_id
from rsparkhub.hub.environments import overlay_dir
from rsparkhub.hub.spark import SessionOwner
from rsparkhub.hub.spawners.base import SessionSpec, SpawnError

if TYPE_CHECKING:
    from rsparkhub.hub.sessions.lifecycle import Lifecycle

log = logging.getLogger("rsparkhub.sessions.warm")
EXPIRY_CHECK_S = 30.0
# A fill waits this long after the start that asked for it: the session the user waits for
# (its welcome, files, first run) does not share the CPU with the next one's start.
FILL_DELAY_S = 3.0


@dataclass
class Entry:
    sid: str
    token: str
    owner_id: str
    state: dict[str, Any]
    made: float = field(default_factory=time.monotonic)


class WarmPool:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lc = lifecycle
        self.entries: dict[str, list[Entry]] = {}
        self._fills: dict[str, asyncio.Task[None]] = {}
        self._expiry: asyncio.Task[None] | None = None
        self._closing = False

    # ------------------------------------------------------------------ report
    @property
    def unavailable(self) -> str | None:
        """Why this hub keeps no pool (None: it does, when ``size`` > 0)."""
        if not hasattr(self.lc.spawner, "hand_out"):
            return f"the {self.lc.spawner.name} spawner has no warm pool"
        reason: str | None = getattr(self.lc.spawner, "pool_supported", None)
        return reason

    @property
    def size(self) -> int:
        return self.lc.settings.session_pool_size if self.unavailable is None else 0

    # ------------------------------------------------------------------ filling
    def want(self, owner_id: str) -> None:
        """Keep ``owner_id``'s pool full (in the background)."""
        if not self.size or self._closing:
            return
        task = self._fills.get(owner_id)
        if task is None or task.done():
            self._fills[owner_id] = asyncio.create_task(
                self._fill(owner_id), name=f"warm-fill-{owner_id}"
            )
        if self._expiry is None:
            self._expiry = asyncio.create_task(self._expire_loop(), name="warm-expiry")

    async def _fill(self, owner_id: str) -> None:
        await asyncio.sleep(FILL_DELAY_S)
        mine = self.entries.setdefault(owner_id, [])
        while len(mine) < self.size and not self._closing:
            try:
                entry = await self._start_one(owner_id)
            except (SpawnError, OSError) as exc:
                log.warning("could not start a pooled session for %s: %s", owner_id, exc)
                return
            if entry is None:
                return
            mine.append(entry)

    def _kernels(self) -> tuple[str, ...]:
        names = [x for x in self.lc.settings.session_pool_kernels.split(",") if x]
        offered = self.lc.settings.session_languages
        if offered:
            names = [x for x in names if x in offered.split(",")]
        return tuple(names)

    async def _start_one(self, owner_id: str) -> Entry | None:
        lc = self.lc
        async with lc.db.session() as db:
            owner = await db.get(User, owner_id)
            if owner is None:
                return None
            name = owner.name
        sid, token = new_id(), new_secret("rsa")
        database = await lc.userdb.session_database(owner_id)
        # SPARK_REMOTE names the session id and the user's server port; attached at
        # hand-out (with its workspace), not while it waits
        spark_env = await lc.spark.session_env(SessionOwner(sid, name, owner_id, None))
        await lc.spark.session_ended(sid)
        env = {**database.env, **spark_env}
        identity = await lc.identities.for_user(owner_id)
        spec = lc.spec(
            sid,
            "",
            name,
            token,
            env,
            identity,
            prestart=self._kernels(),
            pool=True,
            late_dirs=late_dirs(lc.settings.data_dir),
        )
        state = await lc.spawner.start(spec)
        state["reach"] = list(spec.reach)
        log.info("pooled session %s ready for user %s", sid, name)
        return Entry(sid, token, owner_id, state)

    # ------------------------------------------------------------------ hand-out
    async def take(self, owner_id: str) -> Entry | None:
        """One of ``owner_id``'s live entries, or None."""
        mine = self.entries.get(owner_id)
        if not mine:
            return None
        while mine:
            entry = mine.pop(0)
            if await self.lc.spawner.poll(entry.state):
                return entry
            await self.drop(entry)
        return None

    async def hand_out(self, entry: Entry, spec: SessionSpec) -> dict[str, Any]:
        """Start ``spec``'s session from ``entry`` (whose id and token ``spec`` has); a
        cold start of ``spec`` when the entry cannot serve it. Raises SpawnError."""
        assert spec.session_id == entry.sid and spec.token == entry.token
        why = None
        if not set(spec.reach) <= set(entry.state.get("reach", ())):
            why = "the session needs a service port the pooled sandbox does not reach"
        if why is None:
            try:
                await self.lc.spawner.hand_out(entry.state, spec)  # type: ignore[attr-defined]
                log.info("session %s: handed out from the warm pool", spec.session_id)
                return entry.state
            except SpawnError as exc:
                why = str(exc)
        log.info("session %s: a cold start (%s)", spec.session_id, why)
        await self.lc.spawner.stop(entry.state, grace_s=1)
        return await self.lc.spawner.start(spec)

    # ------------------------------------------------------------------ expiry, close
    async def _expire_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(EXPIRY_CHECK_S)
            oldest = time.monotonic() - self.lc.settings.session_pool_idle_s
            for mine in list(self.entries.values()):
                for entry in [e for e in mine if e.made < oldest]:
                    mine.remove(entry)
                    log.info("pooled session %s expired", entry.sid)
                    await self.drop(entry)

    async def drop(self, entry: Entry) -> None:
        """Stop an entry that was never handed out, and remove what it left."""
        with contextlib.suppress(SpawnError, OSError):
            await self.lc.spawner.stop(entry.state, grace_s=2)
        for d in (self.lc.session_dir(entry.sid), self.lc.log_dir(entry.sid)):
            await asyncio.to_thread(_remove_plain_dir, d)

    async def close(self) -> None:
        """Hub shutdown: every entry stops (its hand-out pipe ends with the hub)."""
        self._closing = True
        for task in (*self._fills.values(), self._expiry):
            if task is not None:
                task.cancel()
        entries = [e for mine in self.entries.values() for e in mine]
        self.entries.clear()
        await asyncio.gather(*(self.drop(e) for e in entries), return_exceptions=True)


def late_dirs(data_dir: Path) -> tuple[str, ...]:
    """Where a hand-out binds a workspace's directories: its package overlay, and its
    declared environments (read-only; hub/environments/)."""
    envs = data_dir / "environments"
    return (str(overlay_dir(data_dir, "x").parent), str(envs / "python"), str(envs / "r"))


def _remove_plain_dir(path: Path) -> None:
    """Remove a pooled session's directory unless something is still mounted in it."""
    if not os.path.isdir(path):
        return
    for root, _dirs, _files in os.walk(path):
        if os.path.ismount(root):
            log.warning("not removing %s: %s is a mount", path, root)
            return
    shutil.rmtree(path, ignore_errors=True)
