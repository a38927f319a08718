"""The session's working directory: files put by the hub and files written by code.

``Workdir`` owns the mapping ``known``: ``path → (sha256, mtime_ns, size)`` of files whose
content the hub is known to hold (or refused for good: ``refused``). ``put``/``delete``
apply hub messages (atomically, inside the root only) and record the sha so a later scan
does not echo them back. ``scan`` walks the tree (skipping dot-directories,
``__pycache__``, symlinks and files over ``max_file_bytes``) and reports what changed
compared with what the hub holds or will hold once the changes in flight are acknowledged
(``expected``); the caller (``filesync.FileSync``) calls ``commit_*`` only when the hub
acknowledged a change, so nothing is lost while the hub is unreachable. ``snapshot`` is
the whole tree as ``Known`` entries, for the resync after a re-dial.

All methods are blocking; the agent calls them through ``asyncio.to_thread`` under one lock.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TMP_PREFIX = ".rsparkhub-tmp-"
SKIP_DIRS = {"__pycache__"}


def walks_into(name: str) -> bool:
    """Whether the tree's walk (and so sync) enters a directory of this name."""
    return not name.startswith(".") and name not in SKIP_DIRS


@dataclass(frozen=True)
class Known:
    sha256: str
    mtime_ns: int
    size: int
    refused: bool = False  # the hub refused this content for good: neither resent nor deleted


@dataclass(frozen=True)
class Change:
    path: str
    content: bytes
    sha256: str
    mtime_ns: int
    size: int


class PathOutsideWorkdir(ValueError):
    pass


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Workdir:
    def __init__(self, root: Path, max_file_bytes: int = 50 * 1024 * 1024) -> None:
        self.root = Path(root).resolve()
        self.max_file_bytes = max_file_bytes
        self.known: dict[str, Known] = {}

    # ------------------------------------------------------------------ paths

    def resolve(self, rel: str) -> Path:
        """The absolute path of a workspace-relative path; refuses escapes."""
        if not rel or os.path.isabs(rel) or "\x00" in rel:
            raise PathOutsideWorkdir(f"Refusing path {rel!r}.")
        target = (self.root / rel).resolve()
        if target == self.root or self.root not in target.parents:
            raise PathOutsideWorkdir(f"Path {rel!r} resolves outside the working directory.")
        return target

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # ------------------------------------------------------------------ hub → workdir

    def put(self, rel: str, content: bytes, sha256: str) -> None:
        target = self.resolve(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        st = target.stat()
        self.known[rel] = Known(sha256, st.st_mtime_ns, st.st_size)

    def delete(self, rel: str) -> None:
        target = self.resolve(rel)
        self.known.pop(rel, None)
        try:
            if target.is_dir() and not target.is_symlink():
                return
            target.unlink()
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ code → hub

    def baseline(self) -> None:
        """Record every file already present as known (not to be reported)."""
        changes, _ = self.scan()
        self.commit_changes(changes)

    def _walk(self) -> dict[str, os.stat_result]:
        found: dict[str, os.stat_result] = {}
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames[:] = [d for d in dirnames if walks_into(d)]
            for name in filenames:
                if name.startswith(TMP_PREFIX):
                    continue
                full = os.path.join(dirpath, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if not _is_regular(st):
                    continue
                found[Path(full).relative_to(self.root).as_posix()] = st
        return found

    def scan(self, expected: Mapping[str, Known] | None = None) -> tuple[list[Change], list[str]]:
        """Files changed or created compared with ``expected`` (default: ``known``), and
        expected files that vanished."""
        base = self.known if expected is None else expected
        found = self._walk()
        changes: list[Change] = []
        for rel, st in found.items():
            if st.st_size > self.max_file_bytes:
                continue
            known = base.get(rel)
            if known and known.mtime_ns == st.st_mtime_ns and known.size == st.st_size:
                continue
            change = self.read_change(rel, st)
            if change is not None:
                changes.append(change)
        deleted = [rel for rel in base if rel not in found]
        return changes, deleted

    def read_change(self, rel: str, st: os.stat_result | None = None) -> Change | None:
        """The file's content as a ``Change``; None if it is gone, unreadable or too big."""
        try:
            if st is None:
                st = os.lstat(self.root / rel)
                if not _is_regular(st):
                    return None
            with open(self.root / rel, "rb") as f:
                content = f.read(self.max_file_bytes + 1)
        except OSError:
            return None
        if len(content) > self.max_file_bytes:
            return None
        return Change(rel, content, sha256_bytes(content), st.st_mtime_ns, st.st_size)

    def snapshot(self) -> dict[str, Known | None]:
        """Every file of the tree: its ``Known`` (the sha of ``known`` reused when mtime and
        size match, else hashed), or None for a file too big to send (left alone)."""
        out: dict[str, Known | None] = {}
        for rel, st in self._walk().items():
            known = self.known.get(rel)
            if st.st_size > self.max_file_bytes:
                out[rel] = None
            elif known and known.mtime_ns == st.st_mtime_ns and known.size == st.st_size:
                out[rel] = known
            else:
                change = self.read_change(rel, st)
                if change is not None:
                    out[rel] = Known(change.sha256, change.mtime_ns, change.size)
        return out

    def commit_change(self, change: Change, *, refused: bool = False) -> None:
        self.known[change.path] = Known(change.sha256, change.mtime_ns, change.size, refused)

    def commit_changes(self, changes: list[Change]) -> None:
        for c in changes:
            self.commit_change(c)

    def commit_deleted(self, rel: str) -> None:
        self.known.pop(rel, None)

    def is_new_content(self, change: Change) -> bool:
        known = self.known.get(change.path)
        return known is None or known.sha256 != change.sha256


def _is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)
