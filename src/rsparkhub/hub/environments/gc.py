"""Removing environments nobody used for a while (``environment_gc_after_days``).

Every time a session gets an environment (built or from the cache) ``Builder.ensure``
touches ``DATA_DIR/environments/.used/<kind>-<key>``, under the key's lock; the mark's
mtime is when it was last given to a session. An environment is removed when

* its mark (or, for one made before marks existed, its directory) is older than the
  setting, re-checked under the same lock the build and the cache look-up take — so a
  session that is being given it right now keeps it, and
* no session that has not ended mounts it: each session row's ``spawner_state``
  ``environments`` lists what it was given (``Lifecycle._start``), so this holds across a
  hub restart and for sessions adopted from an earlier hub process.

Removing is ``remove_tree`` of the sealed directory; the next session that declares the
same key builds it again. Must not: touch ``.staging`` (the builder's) or overlays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from rsparkhub.hub.db.engine import Database
from rsparkhub.hub.db.models import Session as SessionRow
from rsparkhub.hub.environments.build import USED, Builder, remove_tree

log = logging.getLogger("rsparkhub.environments")

KINDS = ("python", "r")
LIVE_STATES = ("starting", "running", "stopping")


def last_used(root: Path, kind: str, key: str) -> float:
    for p in (root / USED / f"{kind}-{key}", root / kind / key):
        try:
            return p.stat().st_mtime
        except OSError:
            continue
    return 0.0


def _built(root: Path) -> list[tuple[str, str]]:
    """``(kind, key)`` of every environment on disk."""
    out = []
    for kind in KINDS:
        try:
            out += [(kind, k) for k in sorted(os.listdir(root / kind))]
        except OSError:
            continue
    return out


def _candidates(root: Path, older_than: float) -> list[tuple[str, str]]:
    return [(kind, k) for kind, k in _built(root) if last_used(root, kind, k) < older_than]


def _remove(root: Path, kind: str, key: str, older_than: float) -> bool:
    if last_used(root, kind, key) >= older_than:  # given to a session meanwhile
        return False
    remove_tree(root / kind / key)
    (root / USED / f"{kind}-{key}").unlink(missing_ok=True)
    return True


async def mounted(db: Database) -> set[str]:
    """``kind/key`` of every environment a session that has not ended was given."""
    async with db.session() as s:
        states = (
            await s.execute(
                select(SessionRow.spawner_state).where(SessionRow.state.in_(LIVE_STATES))
            )
        ).scalars()
        return {str(e) for st in states for e in ((st or {}).get("environments") or [])}


def _listing(root: Path) -> list[dict[str, Any]]:
    out = []
    for kind, key in _built(root):
        try:
            meta = json.loads((root / kind / key / "environment.json").read_text())
        except (OSError, ValueError):
            meta = {}
        size = 0
        for d, _dirs, files in os.walk(root / kind / key):
            for f in files:
                with contextlib.suppress(OSError):
                    size += os.lstat(os.path.join(d, f)).st_size
        out.append(
            {
                "kind": kind,
                "key": key,
                "declaration": meta.get("declaration"),
                "built_at": meta.get("built_at"),
                "last_used": last_used(root, kind, key),
                "bytes": size,
            }
        )
    return out


async def listing(root: Path, db: Database) -> list[dict[str, Any]]:
    """Every built environment: kind, key, declaration, built_at and last_used (Unix
    times), bytes, and whether a session that has not ended mounts it."""
    rows = await asyncio.to_thread(_listing, root)
    in_use = await mounted(db)
    return [{**r, "mounted": f"{r['kind']}/{r['key']}" in in_use} for r in rows]


async def collect(builder: Builder, db: Database, keep_s: float) -> list[str]:
    """Remove the environments unused for ``keep_s`` seconds that no live session mounts;
    the ``kind/key`` of those removed."""
    older_than = time.time() - keep_s
    candidates = await asyncio.to_thread(_candidates, builder.root, older_than)
    if not candidates:
        return []
    in_use = await mounted(db)
    removed = []
    for kind, key in candidates:
        if f"{kind}/{key}" in in_use:
            continue
        async with builder.lock(kind, key):
            if await asyncio.to_thread(_remove, builder.root, kind, key, older_than):
                removed.append(f"{kind}/{key}")
                log.info("removed environment %s/%s: unused for %.0f s", kind, key, keep_s)
    return removed
