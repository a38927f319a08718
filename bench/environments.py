"""Declared workspace environments (hub/environments/, docs/environments.md): time to the
first result of a fresh session in a workspace with a ``requirements.txt`` when its
environment must be built (the first session: ``uv`` downloads from PyPI and installs,
in a sandbox, then the directory is sealed) against one whose environment is already in
the cache (every later session, any workspace or user with the same declaration), with a
workspace that declares nothing as the baseline.

One root hub. Each round: the cached environment is removed (so the next session builds
it again, as a first session would), then three fresh workspaces in turn — "build" and
"cached" with the same ``requirements.txt``, "no declaration" without one — each timed
from attach (which starts the session) until the result of importing the packages
(``1+1`` for the baseline) arrives; the session is stopped after each. A build downloads
its wheels each time (a build has no shared cache, by design), so "build" includes PyPI.

Usage: .venv/bin/python bench/environments.py [--n 3] [--json OUT] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _hub import (  # noqa: E402
    HubClient,
    fmt_ms,
    machine_facts,
    new_workspace,
    publish,
    record_section,
    running_hub,
    stats,
    table,
)

TITLE = "11. Workspace environments (`bench/environments.py`)"
REQUIREMENTS = "six==1.16.0\ntomli==2.0.1\n"
CODE = "import six, tomli; print(six.__version__, tomli.__name__)"
SIDES = ("build", "cached", "no declaration")


async def first_result(client: HubClient, declared: bool) -> float:
    wid = await new_workspace(client, "env")
    if declared:
        await client.save_text(wid, "requirements.txt", REQUIREMENTS, 0)
    t0 = time.perf_counter()
    try:
        async with client.attach(wid) as att:
            r = await att.run(CODE if declared else "print(1+1)", language="python")
            took = time.perf_counter() - t0
            expected = "1.16.0 tomli" if declared else "2"
            if r.stdout.strip() != expected:
                raise RuntimeError(f"unexpected output: {r.stdout!r} {r.errors}")
            return took
    finally:
        await client.stop_session(wid)


async def rounds(n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {s: [] for s in SIDES}
    with running_hub() as hub:
        client = HubClient(hub.url, hub.make_user("bench"))
        envs = hub.data_dir / "environments" / "python"
        async with client:
            for _ in range(n):
                if envs.is_dir():  # as root: the sealed directories go too
                    shutil.rmtree(envs)
                out["build"].append(await first_result(client, True))
                out["cached"].append(await first_result(client, True))
                out["no declaration"].append(await first_result(client, False))
    return out


def report(data: dict[str, list[float]]) -> str:
    base = stats(data["no declaration"])["median"]
    rows = []
    for side in SIDES:
        s = stats(data[side])
        rows.append(
            [
                side,
                f"{fmt_ms(s['median'])} ({fmt_ms(s['min'])}–{fmt_ms(s['max'])})",
                f"{s['median'] / base:.2f}×",
            ]
        )
    return "\n".join(
        [
            f"One root hub; n = {len(data['build'])} rounds, each: build, cached, no declaration "
            f"(fresh workspaces). requirements.txt: `{REQUIREMENTS.strip().replace(chr(10), ' ')}`"
            " (two wheels from PyPI). Time from attach (session start) to the first result. "
            "Medians (min–max).",
            "",
            table(
                ["first session of a workspace", "time to first result", "vs no declaration"], rows
            ),
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (a root hub, as CI runs it)")
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t0 = time.monotonic()
    data: dict[str, Any] = asyncio.run(rounds(args.n))
    wall = time.monotonic() - t0
    text = report(data)
    publish(data, text, args.json)
    if args.record:
        load1 = " ".join(f"{x:.2f}" for x in os.getloadavg())
        record_section(TITLE, "bench/environments.py", text, machine_facts(), wall, (load0, load1))


if __name__ == "__main__":
    main()
