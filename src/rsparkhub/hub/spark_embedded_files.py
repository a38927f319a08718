"""The session files an embedded Spark server sees (``spark = 'embedded'``, a root hub with
sandboxes only).

The server reads and writes files for its user's code (``spark.read.csv``,
``rspark_read_csv``, ``write.parquet``), so it sees the working directory of each of the
user's live sessions at the very path the session knows it by
(``DATA_DIR/sessions/<id>/work``), and no other session's: each one is bind-mounted, when
the session starts, under a shared mount of the user's own
(``/run/rsparkhub/spark-files/<user id>``) that the server's sandbox shows read-only at
``DATA_DIR/sessions`` — so sessions started while the server runs show up in it too. An
unprivileged hub cannot mount, and its users' servers see only their own Spark directory.

Owns: those mounts (made, listed, removed). Must not: read or write inside them. Every
function here blocks (mounts): call it from a thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from rsparkhub.hub.sandbox.mounts import bind, is_mount, make_private, make_shared, umount

if TYPE_CHECKING:
    from rsparkhub.hub.sandbox import Sandboxes

log = logging.getLogger("rsparkhub.spark")

FILES_ROOT = Path("/run/rsparkhub/spark-files")  # users' session directories, for their servers
Binds = list[tuple[Path, str]]

_MOUNTS = threading.Lock()  # the hub's own mounts under FILES_ROOT, one change at a time


def files_root(sandboxes: Sandboxes | None) -> Path | None:
    """Where the mounts of users' session directories live (a root hub with sandboxes
    only: without sandboxes the server sees the host's paths; an unprivileged hub cannot
    mount, and its users' servers see no session files)."""
    if sandboxes is None or not sandboxes.bwrap or not sandboxes.root:
        return None
    return FILES_ROOT


def files_dir(user_id: str) -> Path:
    """``/run/rsparkhub/spark-files/<user id>``: a shared mount (so that mounts made
    under it later show up in the user's running server), holding at
    ``<session id>/work`` a bind of each live session's working directory. The server
    sees it, read-only, at DATA_DIR/sessions: each working directory at the path its
    session knows it by."""
    d = FILES_ROOT / user_id
    with _MOUNTS:
        if not is_mount(d):  # once: binding a shared mount onto itself doubles it
            for p in (FILES_ROOT.parent, FILES_ROOT, d):
                p.mkdir(mode=0o711, exist_ok=True)
                p.chmod(0o711)  # searchable, not listable: reached by path only
            bind(d, d)
            make_private(d)  # a peer group of its own …
            make_shared(d)  # … that its sandboxes receive from
    return d


def expose(user_id: str, hub_session_id: str, work: Path) -> None:
    """A session's working directory becomes visible to its user's server."""
    if not work.is_dir():
        return
    target = files_dir(user_id) / hub_session_id / "work"
    with _MOUNTS:
        if is_mount(target):
            return
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
        target.parent.chmod(0o755)
        bind(work, target)
        make_private(target)


def hide(hub_session_id: str) -> None:
    """The session ended: its directory leaves its user's server's view."""
    with _MOUNTS, contextlib.suppress(OSError):
        for d in FILES_ROOT.iterdir():
            target = d / hub_session_id
            if target.is_dir():
                umount(target / "work")
                with contextlib.suppress(OSError):
                    (target / "work").rmdir()
                    target.rmdir()


def drop(user_id: str) -> None:
    """Hub shutdown: its servers are gone, so are their views of the sessions (an
    adopted session is shown again at the next start)."""
    d = FILES_ROOT / user_id
    with _MOUNTS, contextlib.suppress(OSError):
        for sub in d.iterdir():
            umount(sub / "work")
            with contextlib.suppress(OSError):
                (sub / "work").rmdir()
                sub.rmdir()
        umount(d)
        d.rmdir()


def binds(user_id: str, user: str, data_dir: Path) -> tuple[Binds, Binds]:
    """The read-only view of the user's sessions, and a writable bind of each working
    directory already in it (bubblewrap makes what a read-only bind holds read-only;
    what arrives later through the shared mount stays writable). Call it only when
    :func:`files_root` is not None."""
    try:
        d = files_dir(user_id)
    except OSError as exc:
        log.warning("spark: %s's server will not see their sessions' files: %s", user, exc)
        return [], []
    inside = data_dir.resolve() / "sessions"
    rw = [(sub / "work", str(inside / sub.name / "work"))
          for sub in sorted(d.iterdir()) if is_mount(sub / "work")]  # fmt: skip
    return [(d, str(inside))], rw
