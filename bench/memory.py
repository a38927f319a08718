"""Resident memory: the hub process idle, and one idle session (bwrap + agent + kernels),
measured with psutil.

A session's processes are found by its session id in their command line (bwrap and the
agent carry ``--session-id``) plus all their descendants (the kernels, whose command line
names only a connection file). Measured three times per session: agent only (after a
``ping`` answered), after ``1`` ran in R, after ``1`` ran in Python — each after a short
settle. RSS sums over-count pages shared between processes (the agent and the Python kernel
map the same interpreter and libraries), so the proportional set size (PSS) sum is shown too.

Usage: .venv/bin/python bench/memory.py [--reps 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import psutil  # noqa: E402
from _hub import (  # noqa: E402
    Deadline,
    HubClient,
    P,
    mib,
    new_workspace,
    publish,
    run_ok,
    running_hub,
    session_processes,
    table,
)

SETTLE_S = 1.5


def measure(procs: list[psutil.Process]) -> dict[str, Any]:
    rss = pss = 0
    parts: list[dict[str, Any]] = []
    from _hub import _short_cmd  # noqa: PLC0415

    for p in procs:
        try:
            mi = p.memory_full_info()
            name = _short_cmd(p.cmdline())
        except psutil.Error:
            continue
        rss += mi.rss
        pss += getattr(mi, "pss", 0)
        parts.append({"name": name, "pid": p.pid, "rss": mi.rss, "pss": getattr(mi, "pss", 0)})
    return {"rss": rss, "pss": pss, "parts": parts}


async def one_session(client: HubClient) -> dict[str, Any]:
    wid = await new_workspace(client, "memory")
    out: dict[str, Any] = {}
    try:
        async with client.attach(wid) as att:
            await att.request(P.PingRequest(id=uuid.uuid4().hex), timeout=60)
            await asyncio.sleep(SETTLE_S)
            out["agent only"] = measure(session_processes(att.session_id))
            await run_ok(att, "1", "r")
            await asyncio.sleep(SETTLE_S)
            out["+ R kernel after `1`"] = measure(session_processes(att.session_id))
            await run_ok(att, "1", "python")
            await asyncio.sleep(SETTLE_S)
            out["+ Python kernel after `1`"] = measure(session_processes(att.session_id))
    finally:
        await client.stop_session(wid)
    return out


async def main_async(reps: int, budget: float) -> dict[str, Any]:
    deadline = Deadline(budget)
    data: dict[str, Any] = {"reps": reps, "sessions": []}
    with running_hub() as hub:
        assert hub.proc is not None
        hp = psutil.Process(hub.proc.pid)
        token = hub.make_user("bench")
        await asyncio.sleep(SETTLE_S)
        data["hub_fresh"] = hp.memory_full_info()._asdict()
        async with HubClient(hub.url, token) as client:
            await client.request("GET", "/api/projects")  # one authenticated request
            await asyncio.sleep(SETTLE_S)
            data["hub_after_request"] = hp.memory_full_info()._asdict()
            for _ in range(reps):
                deadline.check("memory")
                data["sessions"].append(await one_session(client))
                await asyncio.sleep(SETTLE_S)
            data["hub_after_sessions"] = hp.memory_full_info()._asdict()
    return data


def report(data: dict[str, Any]) -> str:
    hub_rows = [
        [
            "fresh start (no request yet)",
            mib(data["hub_fresh"]["rss"]),
            mib(data["hub_fresh"]["uss"]),
        ],
        [
            "after one API request",
            mib(data["hub_after_request"]["rss"]),
            mib(data["hub_after_request"]["uss"]),
        ],
        [
            f"idle after {data['reps']} sessions (stopped)",
            mib(data["hub_after_sessions"]["rss"]),
            mib(data["hub_after_sessions"]["uss"]),
        ],
    ]
    stages = list(data["sessions"][0])
    rows = []
    for st in stages:
        rss = [s[st]["rss"] for s in data["sessions"]]
        pss = [s[st]["pss"] for s in data["sessions"]]
        rows.append(
            [
                st,
                mib(statistics.median(rss)),
                mib(min(rss)),
                mib(max(rss)),
                mib(statistics.median(pss)),
            ]
        )
    # per-process breakdown of the last full session
    last = data["sessions"][-1][stages[-1]]
    parts = [
        [p["name"], mib(p["rss"]), mib(p["pss"])]
        for p in sorted(last["parts"], key=lambda p: -p["rss"])
    ]
    return (
        "Hub process (RSS, USS)\n\n"
        + table(["state", "RSS", "USS"], hub_rows)
        + f"\n\nOne idle session, sum over its process tree ({data['reps']} sessions)\n\n"
        + table(["stage", "RSS median", "RSS min", "RSS max", "PSS median"], rows)
        + "\n\nBreakdown of the last session with both kernels\n\n"
        + table(["process", "RSS", "PSS"], parts)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--budget", type=float, default=300, help="seconds")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data = asyncio.run(main_async(args.reps, args.budget))
    publish(data, report(data), args.json)


if __name__ == "__main__":
    main()
