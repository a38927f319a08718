"""Whether anything in the working directory changed since the last look (Linux inotify).

After every execution the agent looks for files the code wrote (``filesync.scan_and_send``).
Walking the tree costs a ``stat`` per file: 10,000 files took 180-270 ms on this machine,
added to every ``1+1``. The kernel queues an inotify event inside the very ``write``,
``rename`` or ``unlink`` that changes a file, so once an execution has replied, every change
it made is already in the queue: an empty queue means the walk would find nothing.

Owns: one inotify instance with a watch on every directory the walk visits (the same
skips: hidden directories, ``SKIP_DIRS``), kept up as directories come and go, and
:meth:`Watch.quiet`. Must not: decide what changed (``workdir.scan`` does, after a
``False``) or read files.

What inotify does not see: writes through a shared memory map (``mmap``) and changes made
from outside this mount namespace to a bind-mounted source. A tree that may hold those is
walked anyway every ``max_quiet_s``. Any doubt — an overflowed queue, a watch the user's
limit refused, no inotify at all — makes :meth:`quiet` answer ``False`` (walk).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("rsparkhub.agent.watch")

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

MASK = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
    | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW
)  # fmt: skip
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)
MAX_QUIET_S = 30.0  # walk at least this often anyway (mmap writes are not reported)


class Watch:
    """Directory watches over ``root``. ``keep(name)`` says whether a directory of that
    name is walked (and so watched)."""

    def __init__(
        self, root: Path, keep: Callable[[str], bool], max_quiet_s: float = MAX_QUIET_S
    ) -> None:
        self.root = root
        self.keep = keep
        self.max_quiet_s = max_quiet_s
        self._fd: int | None = None
        self._dirs: dict[int, str] = {}  # watch descriptor -> directory
        self._broken = False  # a watch could not be added or the queue overflowed
        self._walked = 0.0  # monotonic time of the last full walk the caller made
        self._add_watch: Callable[[int, bytes, int], int] | None = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1")
            self._fd = fd
            self._add_watch = libc.inotify_add_watch
        except (OSError, AttributeError) as exc:
            log.info("no inotify (%s): the working directory is walked after each execution", exc)
        self._rewatch()

    @property
    def active(self) -> bool:
        return self._fd is not None and not self._broken

    def quiet(self) -> bool:
        """True when nothing changed since the last ``walked()``: the walk can be skipped.
        Reads (and forgets) the queued events; watches directories that appeared."""
        if self._fd is None:
            return False
        changed = self._drain()
        if self._broken:
            return False
        return not changed and time.monotonic() - self._walked < self.max_quiet_s

    def walked(self) -> None:
        """The caller walked the tree after its last ``quiet()``: its view is current."""
        self._walked = time.monotonic()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------------ internals

    def _drain(self) -> bool:
        assert self._fd is not None
        changed = False
        while True:
            try:
                buf = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return changed
            except OSError as exc:
                log.warning("reading inotify events failed (%s): walking from now on", exc)
                self._broken = True
                return True
            off = 0
            while off + _EVENT.size <= len(buf):
                wd, mask, _cookie, length = _EVENT.unpack_from(buf, off)
                name = buf[off + _EVENT.size : off + _EVENT.size + length].split(b"\0", 1)[0]
                off += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    # events were lost: watches may be missing too, so they are all made again
                    self._rewatch()
                    changed = True
                    continue
                if mask & IN_IGNORED:
                    if self._dirs.pop(wd, None) == str(self.root):
                        self._rewatch()  # the root itself went (and may be back)
                        changed = True
                    continue
                changed = True
                parent = self._dirs.get(wd)
                if parent == str(self.root) and mask & (IN_MOVE_SELF | IN_DELETE_SELF):
                    self._rewatch()  # the root moved away or went: watch what is there now
                    continue
                if parent is not None and mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                    sub = os.fsdecode(name)
                    if self.keep(sub):
                        self._watch_tree(os.path.join(parent, sub))

    def _rewatch(self) -> None:
        self._dirs.clear()
        self._watch_tree(str(self.root))
        if self._fd is not None and str(self.root) not in self._dirs.values():
            log.warning("cannot watch %s: it is walked after each execution", self.root)
            self._broken = True

    def _watch_tree(self, top: str) -> None:
        """Watch ``top`` and every directory under it that the walk visits."""
        if self._fd is None or self._broken:
            return
        for dirpath, dirnames, _files in os.walk(top, followlinks=False):
            dirnames[:] = [d for d in dirnames if self.keep(d)]
            if not self._watch(dirpath):
                return

    def _watch(self, path: str) -> bool:
        assert self._fd is not None and self._add_watch is not None
        wd = self._add_watch(self._fd, os.fsencode(path), MASK)
        if wd >= 0:
            self._dirs[wd] = path
            return True
        err = ctypes.get_errno()
        if err in (errno.ENOENT, errno.ENOTDIR):
            return True  # gone again already: nothing to watch
        log.warning(
            "cannot watch %s (%s): the working directory is walked after each execution",
            path,
            os.strerror(err),
        )
        self._broken = True
        return False
