"""A session's disk cap: its directory (working directory, home, runtime) is a file system
of its own, of ``session_disk_mb``, so a write past the cap fails there (``ENOSPC``, "No
space left on device") and never fills the hub's disk.

How: a sparse file under ``DATA_DIR/session-disks`` made into ext4 (no journal: the
directory is scratch, its files are synced to the hub as they change; copied from a
template made once, ``_fresh_image``) and loop-mounted ``nosuid,nodev`` on the session's
directory (handed to the session's uid like any directory a sandbox writes,
``launcher._own``). It takes a few ms and costs disk only for what is written. Mounting needs root: an unprivileged hub
(and ``session_disk_mb = 0``) leaves the directory on the hub's disk, uncapped
(``doctor`` says which). This is the enforcement point per-user quotas build on.

Stopping a session unmounts and deletes its disk; a hub restart keeps the disks of the
sessions it adopts and removes the rest (``reclaim``).

A workspace's package overlay (hub/environments/) outlives its sessions, so its disk is
*persistent* (``mount_persistent``): one image per workspace, made once, mounted on the
overlay's directory when a session starts and left mounted (a later session, or the session
a restarted hub adopts, finds it mounted); it goes with the workspace (``remove_persistent``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import subprocess
from pathlib import Path

from rsparkhub.hub.sandbox.mounts import is_mount, loop_mount, umount

log = logging.getLogger("rsparkhub.sandbox")

MKFS = "mkfs.ext4"


def supported() -> str | None:
    """None when session disks can be made here, else why not (for ``doctor``)."""
    if os.geteuid() != 0:
        return "the hub does not run as root (mounting a session's disk needs root)"
    if shutil.which(MKFS) is None:
        return f"{MKFS} is not installed (Debian: e2fsprogs)"
    if not os.path.exists("/dev/loop-control"):
        return "the kernel has no loop devices (/dev/loop-control)"
    return None


class SessionDisks:
    def __init__(self, images: Path, size_mb: int) -> None:
        self.images = images
        self.size_mb = size_mb
        why = "session_disk_mb = 0" if size_mb <= 0 else supported()
        self.unavailable: str | None = why

    @property
    def enabled(self) -> bool:
        return self.unavailable is None

    def describe(self) -> dict[str, object]:
        return {"disk_mb": self.size_mb if self.enabled else None, "disk": self.unavailable}

    def image(self, name: str) -> Path:
        return self.images / f"{name}.img"

    def attach(self, name: str, directory: Path) -> bool:
        """Mount a fresh disk of ``size_mb`` on ``directory`` (made if missing). False
        (nothing done) when disks are not available here. Raises OSError or
        CalledProcessError when making or mounting it fails."""
        if not self.enabled:
            return False
        directory.mkdir(parents=True, exist_ok=True)
        if os.path.ismount(directory):
            return True  # adopted: the disk of a session that outlived its hub
        self.images.mkdir(mode=0o700, parents=True, exist_ok=True)
        image = self.image(name)
        try:
            _fresh_image(image, self.size_mb)
            image.with_suffix(".path").write_text(str(directory))
            loop_mount(image, directory)
        except BaseException:
            image.unlink(missing_ok=True)
            image.with_suffix(".path").unlink(missing_ok=True)
            raise
        with contextlib.suppress(OSError):
            (directory / "lost+found").rmdir()
        return True

    def detach(self, name: str) -> None:
        """Unmount the session's disk (lazily: a process still in it lets go later) and
        delete it. Does nothing for a session without one."""
        record = self.image(name).with_suffix(".path")
        try:
            directory = Path(record.read_text())
        except OSError:
            return  # no disk
        umount(directory)  # lazily: a process still in it lets go later
        if is_mount(directory):
            log.warning("could not unmount the disk of %s (%s)", name, directory)
            return
        self.image(name).unlink(missing_ok=True)
        record.unlink(missing_ok=True)

    def names(self) -> list[str]:
        """The sessions that have a disk here."""
        if not self.images.is_dir():
            return []
        return [p.stem for p in self.images.glob("*.img")]


def mount_persistent(image: Path, directory: Path, size_mb: int) -> bool:
    """Mount ``image`` (made, ``size_mb``, the first time) on ``directory``, unless mounted
    already. False (nothing done) when disks are not available here or ``size_mb`` is 0.
    Raises OSError or CalledProcessError when making or mounting it fails."""
    if size_mb <= 0 or supported() is not None:
        return False
    directory.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(directory):
        return True
    image.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not image.exists():
        partial = image.with_suffix(".new")
        try:
            _fresh_image(partial, size_mb)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.rename(image)
    loop_mount(image, directory)
    with contextlib.suppress(OSError):
        (directory / "lost+found").rmdir()
    return True


def remove_persistent(image: Path, directory: Path) -> None:
    """Unmount (lazily) a persistent disk and delete its image."""
    umount(directory)
    image.unlink(missing_ok=True)


def _fresh_image(image: Path, size_mb: int) -> None:
    """An empty ext4 file system of ``size_mb`` at ``image``: a sparse copy of a template
    made once per size next to it (~1 ms, where mkfs.ext4 takes ~7 ms here). Copies share
    the template's file-system UUID; nothing mounts them by UUID."""
    template = image.parent / f".template-{size_mb}m.ext4"
    if not template.exists():
        staged = image.parent / f".template-{size_mb}m.{os.getpid()}.{id(image)}"
        try:
            with open(staged, "wb") as f:
                f.truncate(size_mb * 1024 * 1024)
            _run(MKFS, "-q", "-F", "-m", "0", "-O", "^has_journal", str(staged))
            staged.rename(template)  # atomic: two hubs making it at once keep one
        finally:
            staged.unlink(missing_ok=True)
    _sparse_copy(template, image)


def _sparse_copy(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest`` block range by block range, holes left as holes."""
    with open(source, "rb") as src, open(dest, "wb") as out:
        fin, fout = src.fileno(), out.fileno()
        size = os.fstat(fin).st_size
        out.truncate(size)
        at = 0
        while at < size:
            try:
                data = os.lseek(fin, at, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole is left
                    break
                raise
            end = os.lseek(fin, data, os.SEEK_HOLE)
            done = data
            while done < end:
                n = os.copy_file_range(fin, fout, end - done, done, done)
                if n <= 0:
                    raise OSError(errno.EIO, f"short copy of {source}")
                done += n
            at = end


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
