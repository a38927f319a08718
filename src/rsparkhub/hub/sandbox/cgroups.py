"""One control group per sandbox, made directly in the cgroupfs (v1 or v2).

Owns: creating ``rsparkhub/<name>`` under each controller the sandbox needs, writing its
limits (memory for the whole group — tmpfs pages included —, pids, CPU weight and quota),
putting a starting process into it, listing, killing and removing it. Must not touch
anything outside ``rsparkhub/``.

A hub that cannot write the cgroupfs (unprivileged, no delegation) gets ``NoCgroups``:
limits then fall back to per-process rlimits, and ``describe`` says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "rsparkhub"
_V1_CONTROLLERS = ("memory", "pids", "cpu")


@dataclass(frozen=True)
class Limits:
    """What a sandbox may use. 0 means no limit."""

    memory_mb: int = 4096
    pids: int = 1024
    cpu_weight: int = 100  # relative, 1..10000; 100 = an ordinary share
    cpu_quota: float = 0.0  # cores
    tmp_mb: int = 512  # size of the private /tmp and /dev/shm
    cpu_seconds: int = 0  # RLIMIT_CPU of each process (no cgroup equivalent)


class NoCgroups:
    version = "none"

    def available(self) -> bool:
        return False

    def create(self, name: str, limits: Limits) -> None:
        pass

    def entry_files(self, name: str) -> list[str]:
        """The files a process writes ``0`` into to join the group (``entering``)."""
        return []

    def pids(self, name: str) -> list[int]:
        return []

    def exists(self, name: str) -> bool:
        return False

    def names(self) -> list[str]:
        return []

    def kill(self, name: str) -> None:
        pass

    def remove(self, name: str) -> None:
        pass

    def oom_kills(self, name: str) -> int | None:
        return None

    def events_dir(self, name: str) -> Path | None:
        return None


def _mkdir(d: Path, mode: int = 0o755) -> None:
    """The group's own directory is readable from its sandbox (the agent reads its OOM
    count there); the parent ``rsparkhub/`` is searchable but not listable."""
    d.parent.mkdir(mode=0o711, exist_ok=True)
    with contextlib.suppress(OSError):
        d.parent.chmod(0o711) if d.parent.name == PARENT else None
    d.mkdir(exist_ok=True)
    d.chmod(mode)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except (OSError, ValueError):
        return []


class CgroupsV1(NoCgroups):
    """The v1 hierarchies (memory, pids, cpu) — what this machine and older hosts have."""

    version = "v1"

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root

    def available(self) -> bool:
        return all(os.access(self.root / c, os.W_OK) for c in _V1_CONTROLLERS)

    def _dir(self, controller: str, name: str) -> Path:
        return self.root / controller / PARENT / name

    def create(self, name: str, limits: Limits) -> None:
        for c in _V1_CONTROLLERS:
            _mkdir(self._dir(c, name))
        mem = self._dir("memory", name)
        if limits.memory_mb:
            n = str(limits.memory_mb * 1024 * 1024)
            _write(mem / "memory.limit_in_bytes", n)
            swap = mem / "memory.memsw.limit_in_bytes"
            if swap.exists():  # no swapping past the limit either
                with contextlib.suppress(OSError):
                    _write(swap, n)
        if limits.pids:
            _write(self._dir("pids", name) / "pids.max", str(limits.pids))
        cpu = self._dir("cpu", name)
        _write(cpu / "cpu.shares", str(max(2, limits.cpu_weight * 1024 // 100)))
        if limits.cpu_quota:
            period = 100_000
            _write(cpu / "cpu.cfs_period_us", str(period))
            _write(cpu / "cpu.cfs_quota_us", str(int(limits.cpu_quota * period)))

    def entry_files(self, name: str) -> list[str]:
        # ``tasks``, not ``cgroup.procs``: writing 0 there moves the calling thread only,
        # which skips the kernel's global threadgroup lock (an RCU grace period, 6–15 ms
        # here). The writer is a single-threaded shell, so its whole process moves.
        return [str(self._dir(c, name) / "tasks") for c in _V1_CONTROLLERS]

    def pids(self, name: str) -> list[int]:
        return _read_pids(self._dir("pids", name) / "cgroup.procs")

    def exists(self, name: str) -> bool:
        return self._dir("pids", name).is_dir()

    def names(self) -> list[str]:
        return _subdirs(self.root / "pids" / PARENT)

    def kill(self, name: str) -> None:
        _kill_until_empty(lambda: self.pids(name))

    def remove(self, name: str) -> None:
        for c in _V1_CONTROLLERS:
            with contextlib.suppress(OSError):
                self._dir(c, name).rmdir()

    def oom_kills(self, name: str) -> int | None:
        try:
            text = (self._dir("memory", name) / "memory.oom_control").read_text()
        except OSError:
            return None
        return _field(text, "oom_kill")

    def events_dir(self, name: str) -> Path | None:
        return self._dir("memory", name)


class CgroupsV2(NoCgroups):
    """The unified hierarchy (current distributions)."""

    version = "v2"

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root

    def available(self) -> bool:
        return os.access(self.root, os.W_OK) or os.access(self.root / PARENT, os.W_OK)

    def _dir(self, name: str) -> Path:
        return self.root / PARENT / name

    def create(self, name: str, limits: Limits) -> None:
        parent = self.root / PARENT
        _mkdir(parent, mode=0o711)
        wanted = {"memory", "pids", "cpu"}
        have = set((self.root / "cgroup.controllers").read_text().split())
        for level in (self.root, parent):
            for c in sorted(wanted & have):
                with contextlib.suppress(OSError):
                    _write(level / "cgroup.subtree_control", f"+{c}")
        d = self._dir(name)
        _mkdir(d)
        if limits.memory_mb:
            _write(d / "memory.max", str(limits.memory_mb * 1024 * 1024))
            with contextlib.suppress(OSError):
                _write(d / "memory.swap.max", "0")
        if limits.pids:
            _write(d / "pids.max", str(limits.pids))
        with contextlib.suppress(OSError):
            _write(d / "cpu.weight", str(limits.cpu_weight))
            if limits.cpu_quota:
                _write(d / "cpu.max", f"{int(limits.cpu_quota * 100_000)} 100000")

    def entry_files(self, name: str) -> list[str]:
        return [str(self._dir(name) / "cgroup.procs")]

    def pids(self, name: str) -> list[int]:
        return _read_pids(self._dir(name) / "cgroup.procs")

    def exists(self, name: str) -> bool:
        return self._dir(name).is_dir()

    def names(self) -> list[str]:
        return _subdirs(self.root / PARENT)

    def kill(self, name: str) -> None:
        killer = self._dir(name) / "cgroup.kill"
        if killer.exists():
            with contextlib.suppress(OSError):
                _write(killer, "1")
        _kill_until_empty(lambda: self.pids(name))

    def remove(self, name: str) -> None:
        with contextlib.suppress(OSError):
            self._dir(name).rmdir()

    def oom_kills(self, name: str) -> int | None:
        try:
            text = (self._dir(name) / "memory.events").read_text()
        except OSError:
            return None
        return _field(text, "oom_kill")

    def events_dir(self, name: str) -> Path | None:
        return self._dir(name)


def _subdirs(d: Path) -> list[str]:
    try:
        return sorted(p.name for p in d.iterdir() if p.is_dir())
    except OSError:
        return []


def _field(text: str, key: str) -> int | None:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return None


def _kill_until_empty(pids: Callable[[], list[int]], rounds: int = 50) -> None:
    """SIGKILL every member until none is left (a fork bomb refills the group, but its
    pids limit bounds it and each round kills all of it)."""
    for _ in range(rounds):
        members = pids()
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def detect(root: Path = ROOT) -> NoCgroups:
    """The cgroup manager this host allows: v2 when the unified hierarchy is mounted at the
    root, else v1 when its controllers are writable, else none."""
    if (root / "cgroup.controllers").exists():
        v2 = CgroupsV2(root)
        return v2 if v2.available() else NoCgroups()
    v1 = CgroupsV1(root)
    return v1 if v1.available() else NoCgroups()


# Writes 0 (itself) into each entry file named, then becomes the command: the process and
# everything it starts are in the group before anything of the sandbox runs.
_ENTER = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do '
    'echo 0 >"$1" || { echo "rsparkhub: cannot enter the cgroup ($1)" >&2; exit 125; }; '
    'shift; n=$((n-1)); done; exec "$@"'
)


def entering(entry_files: list[str]) -> list[str]:
    """The command prefix that puts a command into the group (empty: no group). A shell
    rather than a ``preexec_fn``: Python between fork and exec would make the hub fork
    its whole heap (~10 ms per spawn) instead of vfork."""
    if not entry_files:
        return []
    return ["/bin/sh", "-c", _ENTER, "sh", str(len(entry_files)), *entry_files]
