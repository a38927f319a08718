"""Cost of a session's own disk (issue #20; ``session_disk_mb``, hub/sandbox/disk.py): two
root hubs of this checkout side by side, one with the default disk per session and one with
``session_disk_mb = 0`` (the session directory on the hub's disk, as before), their runs
interleaved one by one (with, without, without, with, …) so the machine's drift hits both.

1. time to first result of ``1+1`` in Python: attach to a fresh workspace (a new session,
   so a new disk), N runs per side, the session stopped after each (its disk unmounted
   and deleted) — ``first_result.hub_once``;
2. the disk's own steps, timed alone: a sparse copy of the formatted template of
   ``session_disk_mb`` (the first attach also formats the template: the max), the loop
   mount, then the unmount and removal, N times;
3. what a fresh disk costs on the host's disk (the image's allocated blocks).

Usage: .venv/bin/python bench/session_disk.py [--n 8] [--json OUT] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _hub import (  # noqa: E402
    HubClient,
    fmt_ms,
    machine_facts,
    publish,
    record_section,
    running_hub,
    stats,
    table,
)
from first_result import hub_once  # noqa: E402

from rsparkhub.config import Settings  # noqa: E402
from rsparkhub.hub.sandbox.disk import SessionDisks, supported  # noqa: E402

TITLE = "9b. A disk per session (`bench/session_disk.py`)"


def disk_steps(n: int, size_mb: int) -> dict[str, Any]:
    """attach + detach of a real disk, timed; a fresh image's allocated size."""
    tmp = Path(tempfile.mkdtemp(prefix="rsparkhub-disk-"))
    disks = SessionDisks(tmp / "images", size_mb)
    attach, detach, allocated = [], [], 0
    try:
        for i in range(n):
            target = tmp / f"s{i}"
            t0 = time.perf_counter()
            disks.attach(f"session-{i}", target)
            attach.append(time.perf_counter() - t0)
            allocated = disks.image(f"session-{i}").stat().st_blocks * 512
            t0 = time.perf_counter()
            disks.detach(f"session-{i}")
            detach.append(time.perf_counter() - t0)
    finally:
        for name in disks.names():
            disks.detach(name)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return {"attach_s": attach, "detach_s": detach, "allocated_bytes": allocated}


async def first_results(n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"disk": [], "no disk": []}
    with (
        running_hub() as with_disk,
        running_hub({"RSPARKHUB_SESSION_DISK_MB": "0"}) as without,
    ):
        hubs = {"disk": with_disk, "no disk": without}
        tokens = {k: h.make_user("bench") for k, h in hubs.items()}
        clients = {k: HubClient(hubs[k].url, tokens[k]) for k in hubs}
        try:
            for c in clients.values():
                await c.__aenter__()
            order = ["disk", "no disk", "no disk", "disk"]
            for i in range(n):
                side = order[i % 4]
                for s in (side, "no disk" if side == "disk" else "disk"):
                    marks = await hub_once(clients[s], "python")
                    out[s].append(marks["first_result"])
        finally:
            for c in clients.values():
                await c.__aexit__(None, None, None)
    return out


def report(data: dict[str, Any]) -> str:
    fr = data["first_result"]
    d, nd = stats(fr["disk"]), stats(fr["no disk"])
    rows = [
        [
            "first result of `1+1`, Python (new session)",
            f"{fmt_ms(nd['median'])} ({fmt_ms(nd['min'])}–{fmt_ms(nd['max'])})",
            f"{fmt_ms(d['median'])} ({fmt_ms(d['min'])}–{fmt_ms(d['max'])})",
            f"{d['median'] / nd['median']:.2f}×",
        ]
    ]
    steps = data["steps"]
    a, r = stats(steps["attach_s"]), stats(steps["detach_s"])
    lines = [
        f"Two root hubs of this checkout, runs interleaved; n = {len(fr['disk'])} per side. "
        "Medians (min–max).",
        "",
        table(
            ["measurement", "no disk (session_disk_mb = 0)", "a disk per session", "ratio"], rows
        ),
        "",
        table(
            ["the disk alone", "median (min–max)"],
            [
                [
                    f"make + mount ({data['size_mb']} MB sparse copy of the template, loop mount)",
                    f"{fmt_ms(a['median'])} ({fmt_ms(a['min'])}–{fmt_ms(a['max'])})",
                ],
                [
                    "unmount + delete",
                    f"{fmt_ms(r['median'])} ({fmt_ms(r['min'])}–{fmt_ms(r['max'])})",
                ],
                ["host disk used by a fresh disk", f"{steps['allocated_bytes'] / 2**20:.1f} MiB"],
            ],
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    why = supported()
    if why is not None:
        sys.exit(f"session disks cannot be made here: {why}")
    size_mb = Settings().session_disk_mb
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t0 = time.monotonic()
    data = {
        "size_mb": size_mb,
        "steps": disk_steps(args.n, size_mb),
        "first_result": asyncio.run(first_results(args.n)),
    }
    wall = time.monotonic() - t0
    text = report(data)
    publish(data, text, args.json)
    if args.record:
        load1 = " ".join(f"{x:.2f}" for x in os.getloadavg())
        record_section(TITLE, "bench/session_disk.py", text, machine_facts(), wall, (load0, load1))


if __name__ == "__main__":
    main()
