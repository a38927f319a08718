"""A root hub's disks (hub/sandbox/disk.py, mounts.py): each one a sparse copy of a
formatted template, loop-mounted with the loop driver's ioctls and mount(2).

CI runs the suite as root (mounting needs it); as another user these fail, they never skip.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from rsparkhub.hub.sandbox.disk import SessionDisks, mount_persistent, remove_persistent
from rsparkhub.hub.sandbox.mounts import is_mount, umount


def _loop_devices_of(image: Path) -> list[str]:
    out = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[-1] == str(image)]


def test_each_disk_is_an_empty_capped_file_system_of_its_own(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "CI runs the suite as root: loop mounts need it"
    disks = SessionDisks(tmp_path / "disks", 48)
    a, b = tmp_path / "a", tmp_path / "b"
    assert disks.attach("session-a", a) and disks.attach("session-b", b)
    try:
        image = disks.image("session-a")
        # a valid, clean, empty ext4 (lost+found removed), holes left as holes
        fsck = subprocess.run(["fsck.ext4", "-n", "-f", str(image)], capture_output=True)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        assert sorted(os.listdir(a)) == [] and sorted(os.listdir(b)) == []
        assert image.stat().st_blocks * 512 < 8 * 1024 * 1024, "the copy is not sparse"
        assert (tmp_path / "disks" / ".template-48m.ext4").is_file()
        assert sorted(disks.names()) == ["session-a", "session-b"]
        mounts = {ln.split()[1]: ln.split()[3] for ln in open("/proc/self/mounts")}
        assert {"nosuid", "nodev", "noatime"} <= set(mounts[str(a)].split(",")), mounts[str(a)]
        # what one holds the other does not; past the cap a write fails there
        (a / "x").write_bytes(b"a")
        assert not (b / "x").exists()
        try:
            with open(a / "big", "wb") as fh:
                fh.write(b"\0" * (64 * 1024 * 1024))
            raise AssertionError("64 MiB fit on a 48 MB disk")
        except OSError as exc:
            assert exc.errno == 28, exc  # ENOSPC
        assert _loop_devices_of(image), "no loop device backs the disk"
    finally:
        disks.detach("session-a")
        disks.detach("session-b")
    # unmounted, deleted, and the loop device went with the mount (autoclear)
    assert not is_mount(a) and not is_mount(b)
    assert not disks.image("session-a").exists() and disks.names() == []
    assert _loop_devices_of(disks.image("session-a")) == []


def test_a_persistent_disk_keeps_its_files_across_mounts(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "CI runs the suite as root: loop mounts need it"
    image, directory = tmp_path / "overlays" / "w.img", tmp_path / "w"
    assert mount_persistent(image, directory, 32)
    assert mount_persistent(image, directory, 32), "a second call finds it mounted"
    (directory / "kept").write_text("yes")
    remove_persistent(image, directory)
    assert not is_mount(directory) and not image.exists()
    assert mount_persistent(image, directory, 32)  # a new, empty one
    try:
        assert not (directory / "kept").exists()
        (directory / "kept").write_text("again")
        umount(directory)
        assert not is_mount(directory)
        assert mount_persistent(image, directory, 32)
        assert (directory / "kept").read_text() == "again"
    finally:
        remove_persistent(image, directory)
