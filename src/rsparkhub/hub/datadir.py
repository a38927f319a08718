"""The hub's data directory is private: nothing in it is readable by other accounts.

Owns: the mode of DATA_DIR and the hub's umask. The hub database, blobs, event logs,
secrets and logs are created 0600/0700 (umask 077). DATA_DIR itself is 0700 — or 0711
(searchable, not listable) when the embedded PostgreSQL server runs under the system's
``postgres`` account from a cluster an older hub set up in ``DATA_DIR/postgres``, which that
account must traverse to (``hub/postgres.py`` keeps a root hub's new cluster outside
DATA_DIR). Sandboxes never see DATA_DIR: each gets only its own directory, bound by fd.
A data directory left readable by an older hub is made private once, at start. A
DATA_DIR the hub does not own (a Kubernetes volume's root) keeps the mode its owner gave it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

# Entries owned by other accounts: the embedded PostgreSQL's cluster, users' session and
# Spark directories. Their owners keep them 0700; the hub does not touch their modes.
_FOREIGN = ("postgres", "sessions", "spark")


def make_private(data_dir: Path, traversable: bool = False) -> None:
    os.umask(0o077)
    data_dir.mkdir(parents=True, exist_ok=True)
    st = data_dir.stat()
    mode = stat.S_IMODE(st.st_mode)
    want = 0o711 if traversable else 0o700
    if mode & 0o066:  # an older hub left it readable: tighten what the hub owns
        _tighten(data_dir)
    # A volume's root that the hub does not own (Kubernetes: root's, group fsGroup) keeps
    # its mode — only its owner may change it; what the hub creates in it is private.
    if mode != want and st.st_uid == os.geteuid():
        data_dir.chmod(want)


def _tighten(root: Path) -> None:
    me = os.geteuid()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == root:
            dirnames[:] = [d for d in dirnames if d not in _FOREIGN]
        for name in (*dirnames, *filenames):
            p = here / name
            with contextlib.suppress(OSError):
                st = p.lstat()
                if st.st_uid == me and not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                    p.chmod(stat.S_IMODE(st.st_mode) & 0o700)
