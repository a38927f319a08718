"""A session's disk cap: its directory (working directory, home, runtime) is a file system
of its own, of ``session_disk_mb``, so a write past the cap fails there (``ENOSPC``, "No
space left on device") and never fills the hub's disk.

How: a sparse file under ``DATA_DIR/session-disks`` made into ext4 (no journal: the
directory is scratch, its files are synced to the hub as they change) and loop-mounted
``nosuid,nodev`` on the session's directory (handed to the session's uid like any
directory a sandbox writes, ``launcher._own``). It takes about
20 ms and costs disk only for what is written. Mounting needs root: an unprivileged hub
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
import logging
import os
import shutil
import subprocess
from pathlib import Path

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
        with open(image, "wb") as f:
            f.truncate(self.size_mb * 1024 * 1024)
        try:
            _run(MKFS, "-q", "-F", "-m", "0", "-O", "^has_journal", str(image))
            image.with_suffix(".path").write_text(str(directory))
            _run("mount", "-o", "loop,nosuid,nodev,noatime", str(image), str(directory))
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
        if os.path.ismount(directory):
            try:
                _run("umount", "-l", str(directory))
            except (OSError, subprocess.CalledProcessError) as exc:
                log.warning("could not unmount the disk of %s: %s", name, exc)
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
        with open(partial, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        try:
            _run(MKFS, "-q", "-F", "-m", "0", "-O", "^has_journal", str(partial))
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.rename(image)
    _run("mount", "-o", "loop,nosuid,nodev,noatime", str(image), str(directory))
    with contextlib.suppress(OSError):
        (directory / "lost+found").rmdir()
    return True


def remove_persistent(image: Path, directory: Path) -> None:
    """Unmount (lazily) a persistent disk and delete its image."""
    if os.path.ismount(directory):
        _run("umount", "-l", str(directory))
    image.unlink(missing_ok=True)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
