"""The cgroup v2 manager (``CgroupsV2``, what current distributions need) on a real unified
hierarchy.

This machine is a hybrid host: cgroup v1 controllers at /sys/fs/cgroup/<controller> (what
the hub uses here, ``CgroupsV1``) and the unified hierarchy at /sys/fs/cgroup/unified. Its
memory, pids and cpu controllers are bound to v1, so on v2 only the core works here:
creating a group, putting a process tree into it between fork and exec, listing it,
``cgroup.kill`` and removal — all checked below with real processes. Setting a memory limit
where the v2 memory controller is missing fails loudly instead of running the session
without its limit. Where the unified hierarchy has the controllers (a pure v2 host), the
limits are checked too.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rsparkhub.hub.sandbox.cgroups import CgroupsV2, Limits, entering

UNIFIED = Path("/sys/fs/cgroup/unified")
ROOT = UNIFIED if (UNIFIED / "cgroup.controllers").exists() else Path("/sys/fs/cgroup")


@pytest.fixture
def v2() -> Iterator[tuple[CgroupsV2, str]]:
    assert (ROOT / "cgroup.controllers").exists(), "no unified (v2) hierarchy is mounted"
    cg = CgroupsV2(ROOT)
    assert cg.available(), f"{ROOT} is not writable: the suite runs as root"
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield cg, name
    cg.kill(name)
    cg.remove(name)


def _wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_v2_group_holds_lists_and_kills_a_whole_process_tree(
    v2: tuple[CgroupsV2, str],
) -> None:
    cg, name = v2
    cg.create(name, Limits(memory_mb=0, pids=0))
    assert cg.exists(name) and name in cg.names()
    entry = cg.entry_files(name)
    proc = subprocess.Popen([*entering(entry), "sh", "-c", "sleep 120 & sleep 120 & wait"])
    try:
        assert _wait_for(lambda: len(cg.pids(name)) == 3), cg.pids(name)
        assert proc.pid in cg.pids(name)
        cg.kill(name)
        assert cg.pids(name) == []
        assert proc.wait(timeout=10) == -9  # SIGKILL: cgroup.kill, not a polite signal
    finally:
        proc.kill()
        proc.wait(timeout=10)
    cg.remove(name)
    assert not cg.exists(name)


def test_v2_limits_are_set_or_refused(v2: tuple[CgroupsV2, str]) -> None:
    """With the memory and pids controllers, the limits land in memory.max and pids.max;
    without them (this hybrid host), asking for a memory limit raises instead of leaving
    a session unlimited."""
    cg, name = v2
    have = set((ROOT / "cgroup.controllers").read_text().split())
    limits = Limits(memory_mb=256, pids=64)
    if {"memory", "pids"} <= have:
        cg.create(name, limits)
        d = ROOT / "rsparkhub" / name
        assert (d / "memory.max").read_text().strip() == str(256 * 1024 * 1024)
        assert (d / "pids.max").read_text().strip() == "64"
    else:
        with pytest.raises(OSError):
            cg.create(name, limits)
