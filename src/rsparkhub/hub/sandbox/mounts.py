"""Host bind mounts a root hub makes for its sandboxes (views of directories a sandbox's
uid cannot reach by path; per-user Spark file views), and the one way to ask whether
something is mounted somewhere.

The mounts are made with the mount(2) and umount2(2) system calls (and loop devices with
the loop driver's ioctls), not mount(8): a session's start makes several, and each
mount(8) is a process of its own (~3–5 ms here)."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import struct
from pathlib import Path

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20
MS_NOATIME = 0x400
MNT_DETACH = 0x2
LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A  # Linux 5.8
LO_FLAGS_AUTOCLEAR = 4
# struct loop_config: fd, block_size, struct loop_info64 (232 bytes), __u64 reserved[8].
# lo_flags sits at offset 52 of loop_info64 (5 u64s, then lo_number, lo_encrypt_type,
# lo_encrypt_key_size).
_LOOP_CONFIG = struct.Struct("=II52sI176s64s")

# The new mount API (Linux 5.2 / 5.12 for mount_setattr); one number on every architecture.
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 0x1, os.O_CLOEXEC
AT_FDCWD, AT_EMPTY_PATH, MOVE_MOUNT_F_EMPTY_PATH = -100, 0x1000, 0x4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 0x1, 0x2, 0x4, 0x8
_MOUNT_ATTR = struct.Struct("=QQQQ")  # struct mount_attr: attr_set, attr_clr, propagation, userns

_libc = ctypes.CDLL(None, use_errno=True)


def is_mount(path: Path) -> bool:
    """Whether ``path`` is a mount point (``os.path.ismount`` misses bind mounts within one
    file system, so ask the kernel's mount table)."""
    want = str(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                point = line.split(" ", 5)[4]
                if point == want or _unescape(point) == want:
                    return True
    except OSError:
        return False
    return False


def bind(source: Path, target: Path, read_only: bool = False) -> None:
    """``mount --bind source target`` (not recursive), then, if ``read_only``, remount it
    read-only, nosuid and nodev (and noexec if the source had it)."""
    _mount(source, target, MS_BIND)
    if read_only:
        keep = os.statvfs(target).f_flag & MS_NOEXEC  # ST_NOEXEC has MS_NOEXEC's value
        _mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | keep)


def bind_read_only_whole(source: Path, target: Path) -> None:
    """Bind ``source`` at ``target`` read-only, nosuid and nodev (noexec if the source had
    it) in one step: the copy is made read-only *before* it is attached, so the copies that
    mount propagation makes of it (a running sandbox's view of a shared directory) are
    read-only too. ``bind`` + remount would propagate a writable copy."""
    keep = MOUNT_ATTR_NOEXEC if os.statvfs(source).f_flag & MS_NOEXEC else 0
    fd = _syscall(
        SYS_OPEN_TREE, AT_FDCWD, os.fsencode(str(source)), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC
    )
    try:
        attr = ctypes.create_string_buffer(
            _MOUNT_ATTR.pack(
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | keep, 0, 0, 0
            )
        )
        _syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH, attr, _MOUNT_ATTR.size)
        _syscall(
            SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, os.fsencode(str(target)), MOVE_MOUNT_F_EMPTY_PATH
        )
    finally:
        os.close(fd)


def _syscall(number: int, *args: object) -> int:
    ret = int(_libc.syscall(ctypes.c_long(number), *args))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syscall {number}: {os.strerror(err)}")
    return ret


def loop_mount(image: Path, target: Path, fstype: str = "ext4") -> None:
    """``mount -o loop,nosuid,nodev,noatime image target``: a free loop device on
    ``image`` (freed when unmounted: autoclear), then the mount."""
    img = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(16):  # another process may take the free device first
                n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
                dev = os.open(f"/dev/loop{n}", os.O_RDWR | os.O_CLOEXEC)
                try:
                    config = _LOOP_CONFIG.pack(img, 0, b"", LO_FLAGS_AUTOCLEAR, b"", b"")
                    fcntl.ioctl(dev, LOOP_CONFIGURE, config)
                except OSError as exc:
                    os.close(dev)
                    if exc.errno == errno.EBUSY:
                        continue
                    raise
                try:  # the device goes away when the mount does (or now, if it fails)
                    _mount(Path(f"/dev/loop{n}"), target, MS_NOSUID | MS_NODEV | MS_NOATIME, fstype)
                finally:
                    os.close(dev)
                return
            raise OSError(errno.EBUSY, f"no free loop device for {image}", str(image))
        finally:
            os.close(ctl)
    finally:
        os.close(img)


def make_private(target: Path) -> None:
    """``mount --make-private``: mounts under ``target`` no longer propagate anywhere."""
    _mount(None, target, MS_PRIVATE)


def make_shared(target: Path) -> None:
    """``mount --make-shared``: mounts made under ``target`` later show up in its copies
    (a sandbox's view of it)."""
    _mount(None, target, MS_SHARED)


def umount(path: Path) -> None:
    """Every mount stacked on ``path``, detached lazily (bounded: a failing umount is not
    retried forever)."""
    for _ in range(8):
        if not is_mount(path):
            return
        _libc.umount2(os.fsencode(str(path)), MNT_DETACH)


def _mount(source: Path | None, target: Path, flags: int, fstype: str | None = None) -> None:
    src = os.fsencode(str(source)) if source is not None else None
    kind = fstype.encode() if fstype else None
    if _libc.mount(src, os.fsencode(str(target)), kind, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or ''} {target}: {os.strerror(err)}", str(target))


def _unescape(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)
