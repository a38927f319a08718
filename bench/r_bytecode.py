"""The agent's R files as byte code (``agent/rload.py``): what a fresh R kernel gains when
it loads them compiled at install instead of from the sources (R's JIT then compiles each
function on its first call).

One hub, ``session_prestart_kernel = false`` (the kernel starts with the first request, so
the first request pays for everything). Each run is a fresh workspace holding
``analysis.R``: attach, then ``1+1``, ``1+1``, ``x <- 2`` (the first variable: the
environment diff describes it) and ``1+1`` in turn, each timed at the client until its
``done`` event; the first of them includes the session's and the kernel's start. The runs
alternate between the two ways in pairs (AB BA …): *byte code* loads
``agent/r/compiled/`` as installed; *sources* moves that directory away for the run (and
back, whatever happens), so the kernel loads the sources.

Usage: .venv/bin/python bench/r_bytecode.py [--n 6] [--json OUT] [--record]
       .venv/bin/python bench/r_bytecode.py --report OUT.json [--record]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _hub import (  # noqa: E402
    Deadline,
    HubClient,
    fmt_ms,
    new_workspace,
    recorded_main,
    run_ok,
    running_hub,
    stats,
    table,
)

from rsparkhub.agent.rload import COMPILED, up_to_date  # noqa: E402

TITLE = "13. The agent's R code as byte code (`bench/r_bytecode.py`)"
HUB_ENV = {
    "RSPARKHUB_SPARK": "off",
    "RSPARKHUB_USER_DATABASES": "off",
    "RSPARKHUB_SESSION_PRESTART_KERNEL": "false",
}
STEPS = ("1+1", "1+1", "x <- 2", "1+1")
LABELS = ("first `1+1` (attach → done)", "second `1+1`", "first `x <- 2`", "then `1+1`")
WAYS = ("bytecode", "sources")
RUN_TIMEOUT = 120.0
AWAY = COMPILED.with_name(".compiled-away-bench")


async def one_run(client: HubClient) -> list[float]:
    wid = await new_workspace(client, "bytecode")
    await client.upload(wid, {"analysis.R": b"x <- 1\n"})
    took = []
    try:
        t0 = time.perf_counter()
        async with client.attach(wid) as att:
            for code in STEPS:
                await run_ok(att, code, "r", RUN_TIMEOUT)
                took.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
    finally:
        await client.stop_session(wid)
    return took


async def measure(n: int, budget: Deadline) -> dict[str, Any]:
    runs: dict[str, list[list[float]]] = {way: [] for way in WAYS}
    with running_hub(HUB_ENV) as hub:
        async with HubClient(hub.url, hub.make_user("bench"), timeout=RUN_TIMEOUT) as client:
            await asyncio.wait_for(one_run(client), RUN_TIMEOUT)  # untimed warm-up
            for i in range(2 * n):
                way = WAYS[(i + i // 2) % 2]  # AB BA AB …
                budget.check(f"run {i + 1} ({way})")
                if way == "sources":
                    COMPILED.rename(AWAY)
                try:
                    runs[way].append(await asyncio.wait_for(one_run(client), RUN_TIMEOUT))
                finally:
                    if AWAY.exists():
                        AWAY.rename(COMPILED)
    return {"n": n, "runs": runs}


def report(data: dict[str, Any]) -> str:
    rows = []
    for k, label in enumerate(LABELS):
        by_way = {way: stats([run[k] for run in data["runs"][way]]) for way in WAYS}
        b, s = by_way["bytecode"], by_way["sources"]
        rows.append([
            label,
            f"{fmt_ms(s['median'])} ({fmt_ms(s['min'])}–{fmt_ms(s['max'])})",
            f"{fmt_ms(b['median'])} ({fmt_ms(b['min'])}–{fmt_ms(b['max'])})",
            f"{b['median'] / s['median']:.2f}",
        ])  # fmt: skip
    return (
        "**A fresh R session's first executions**, wall time at the client until each "
        "`done`, median (min–max); the kernel starts with the first request. *sources*: "
        "the agent's R files loaded from their sources (R's JIT compiles each function on "
        "its first call); *byte code*: compiled at install (`agent/r/compiled/`). "
        f"N={data['n']} per way, alternating in pairs, after one untimed run.\n\n"
        + table(["execution", "sources", "byte code", "ratio"], rows)
    )


def _stale() -> str | None:
    if up_to_date():
        return None
    return "the R byte code is not up to date: run python -m rsparkhub.agent.rload"


def main() -> None:
    recorded_main(__doc__ or "", TITLE, "bench/r_bytecode.py", measure, report, n=6,
                  budget_s=900, check=_stale)  # fmt: skip


if __name__ == "__main__":
    main()
