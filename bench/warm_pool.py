"""The warm pool: a new session handed a sandbox, agent and kernels started ahead for its
user (``session_pool_size``; hub/sessions/warm.py, agent/handout.py), against today's
cold start with the kernel prestarted (``session_prestart_kernel``, the default).

Two hubs side by side (no Spark, no user databases), one with ``session_pool_size = 1``
and ``session_pool_kernels = python,r``, one with the defaults (no pool), taking turns in
an order that alternates every round so that machine load drifts over both alike. Every
run is a fresh workspace holding one script (``analysis.py`` / ``analysis.R``), opened
``SETTLE_S`` after the previous session stopped (a user moving to their next workspace;
the pool refills meanwhile), and ``1+1`` is sent at attach: the wall time from the start
of attach to that request's ``done`` event. Each pool run checks that its session was
handed out (its agent is a ``--pool`` one) and the table counts them.

Then the memory one waiting entry holds (agent, pasta, sandbox, Python and R kernels:
the RSS of its processes), which is what each user with a pool costs while idle.

Then the same for a **Spark workspace** (``job.py`` imports pyspark) on two hubs with
embedded Spark, the user's Spark server already running (warm: a first session started
it and stays attached): the first Spark statement (``SparkSession…getOrCreate()`` and a
``SELECT 1``) sent at attach, to its ``done`` — issue #20's "warm first result".

One untimed run on each hub comes first for each case (disk cache, the first fill).
Every loop is bounded in count and time.

Usage: .venv/bin/python bench/warm_pool.py [--n 5] [--json OUT] [--record]
       .venv/bin/python bench/warm_pool.py --report OUT.json [--record]
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
    P,
    fmt_ms,
    mib,
    new_workspace,
    recorded_main,
    run_ok,
    running_hub,
    session_processes,
    stats,
    table,
    tree_rss,
)
from spark import PY_FIRST, SPARK_ENV, SPARK_FILE, wait_state  # noqa: E402

TITLE = "14. Warm pool (`bench/warm_pool.py`)"
HUB_ENV = {"RSPARKHUB_SPARK": "off", "RSPARKHUB_USER_DATABASES": "off"}
HUB_POOL = {
    **HUB_ENV,
    "RSPARKHUB_SESSION_POOL_SIZE": "1",
    "RSPARKHUB_SESSION_POOL_KERNELS": "python,r",
}
BUDGET_S = 1500.0
RUN_TIMEOUT = 120.0
SETTLE_S = 8.0  # > the pool's fill delay (3 s) + an entry's start with both kernels
LANGUAGES: tuple[P.Language, ...] = ("python", "r")
KINDS = ("cold", "pool")
SCRIPTS: dict[str, dict[str, bytes]] = {
    "python": {"analysis.py": b"x = sum(range(10))\n"},
    "r": {"analysis.R": b"x <- sum(1:10)\n"},
}


def _pooled(session_id: str) -> bool:
    """Whether the session's agent was started for the pool (``--pool``)."""
    for p in session_processes(session_id):
        try:
            cmd = p.cmdline()
        except Exception:  # noqa: BLE001 - gone
            continue
        if "rsparkhub.agent" in cmd and "--pool" in cmd:
            return True
    return False


async def one_run(client: HubClient, language: Any) -> tuple[float, bool]:
    """A fresh workspace with a script: seconds from attach to the first ``1+1``'s
    (``language`` spark: the first Spark statement's) ``done``, and whether the session
    came from the pool."""
    wid = await new_workspace(client, f"warm-{language}")
    spark = language == "spark"
    await client.upload(wid, SPARK_FILE if spark else SCRIPTS[language])
    try:
        t0 = time.perf_counter()
        async with client.attach(wid) as att:
            await run_ok(att, PY_FIRST if spark else "1+1", "python" if spark else language,
                         RUN_TIMEOUT)  # fmt: skip
            took = time.perf_counter() - t0
            info = await client.request("GET", f"/api/workspaces/{wid}/session")
        return took, _pooled(str(info["id"]))
    finally:
        await client.stop_session(wid)


async def bounded(client: HubClient, language: Any, what: str, budget: Deadline) -> Any:
    budget.check(what)
    await asyncio.sleep(SETTLE_S)
    limit = min(RUN_TIMEOUT + 30, max(budget.left(), 1.0))
    return await asyncio.wait_for(one_run(client, language), limit)


def entry_memory(data_dir: Path) -> tuple[int, list[tuple[str, int]]]:
    """RSS of a waiting pool entry: the ``--pool`` agent not serving a session, with its
    sandbox's processes (pasta, bwrap, kernels)."""
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "--pool" in cmd and "rsparkhub.agent" in cmd and str(data_dir) in " ".join(cmd):
            sid = cmd[cmd.index("--session-id") + 1]
            return tree_rss(session_processes(sid))
    return 0, []


async def rounds(
    clients: dict[str, HubClient], case: Any, n: int, budget: Deadline,
    runs: dict[str, dict[str, list[float]]], handed: dict[str, int],
) -> None:  # fmt: skip
    """One untimed run on each hub, then ``n`` rounds taking turns."""
    for kind in KINDS:
        await bounded(clients[kind], case, f"{case} {kind} warm-up", budget)
    for r in range(n):
        for kind in KINDS if r % 2 == 0 else KINDS[::-1]:
            took, pooled = await bounded(clients[kind], case, f"{case} {kind}", budget)
            runs.setdefault(case, {k: [] for k in KINDS})[kind].append(took)
            if kind == "pool" and pooled:
                handed[case] = handed.get(case, 0) + 1


async def spark_part(n: int, budget: Deadline, runs: Any, handed: Any) -> None:
    """The Spark case: both hubs with embedded Spark, each user's server kept running by
    a first session that stays attached."""
    pool_env = {**HUB_POOL, **SPARK_ENV, "RSPARKHUB_SPARK_IDLE_TIMEOUT_S": "600"}
    cold_env = {**HUB_ENV, **SPARK_ENV, "RSPARKHUB_SPARK_IDLE_TIMEOUT_S": "600"}
    with running_hub(cold_env) as cold, running_hub(pool_env) as pool:
        async with (
            HubClient(cold.url, cold.make_user("bench"), timeout=RUN_TIMEOUT) as c_cold,
            HubClient(pool.url, pool.make_user("bench"), timeout=RUN_TIMEOUT) as c_pool,
        ):
            clients = {"cold": c_cold, "pool": c_pool}
            holders = []
            for c in clients.values():  # start each user's server; keep it running
                wid = await new_workspace(c, "spark-holder")
                holders.append(c.attach(wid))
                att = await holders[-1].__aenter__()
                await run_ok(att, PY_FIRST, "python", RUN_TIMEOUT)
                await wait_state(c, "running", budget)
            try:
                await rounds(clients, "spark", n, budget, runs, handed)
            finally:
                for h in holders:
                    await h.__aexit__(None, None, None)


async def measure(n: int, budget: Deadline) -> dict[str, Any]:
    runs: dict[str, dict[str, list[float]]] = {}
    handed: dict[str, int] = {}
    memory: dict[str, Any] = {}
    with running_hub(HUB_ENV) as cold, running_hub(HUB_POOL) as pool:
        async with (
            HubClient(cold.url, cold.make_user("bench"), timeout=RUN_TIMEOUT) as c_cold,
            HubClient(pool.url, pool.make_user("bench"), timeout=RUN_TIMEOUT) as c_pool,
        ):
            clients = {"cold": c_cold, "pool": c_pool}
            for lang in LANGUAGES:
                await rounds(clients, lang, n, budget, runs, handed)
            await asyncio.sleep(SETTLE_S)
            total, parts = entry_memory(pool.data_dir)
            memory = {"total": total, "parts": parts}
    await spark_part(n, budget, runs, handed)
    return {"n": n, "settle_s": SETTLE_S, "runs": runs, "handed": handed, "memory": memory}


def _cell(xs: list[float]) -> str:
    s = stats(xs)
    return f"{fmt_ms(s['median'])} ({fmt_ms(s['min'])}–{fmt_ms(s['max'])})"


def report(data: dict[str, Any]) -> str:
    rows = []
    for lang in (*LANGUAGES, "spark"):
        if lang not in data["runs"]:
            continue
        cold, pool = data["runs"][lang]["cold"], data["runs"][lang]["pool"]
        m_cold, m_pool = stats(cold)["median"], stats(pool)["median"]
        rows.append(
            [
                lang,
                _cell(cold),
                _cell(pool),
                f"{m_pool / m_cold:.2f}",
                f"{data['handed'].get(lang, 0)}/{len(pool)}",
            ]
        )
    mem = data["memory"]
    parts = "; ".join(f"{name} {mib(rss)}" for name, rss in sorted(mem["parts"]))
    return (
        "**First `1+1` of a new session, sent at attach**: wall time at the client from "
        "the start of attach to its `done` event, median (min–max). *cold*: the default "
        "hub (sandbox, agent and the script's kernel start with the session); *warm pool*: "
        "`session_pool_size = 1`, `session_pool_kernels = python,r`. Each run a fresh "
        f"workspace with `analysis.py` / `analysis.R`, opened {data['settle_s']:.0f} s "
        f"after the previous session stopped; N={data['n']} per cell, the hubs taking "
        "turns in an order that alternates every round, after one untimed run on each.\n\n"
        + table(["case", "cold", "warm pool", "ratio", "handed out"], rows)
        + "\n\n*spark*: a workspace whose `job.py` imports pyspark, on two hubs with embedded "
        "Spark and the user's server running; the first Spark statement (`SparkSession"
        "…getOrCreate()`, `SELECT 1`) sent at attach."
        + f"\n\n**A waiting entry holds {mib(mem['total'])}** (RSS of its processes: {parts})."
    )


def main() -> None:
    recorded_main(__doc__ or "", TITLE, "bench/warm_pool.py", measure, report, n=5,
                  budget_s=BUDGET_S)  # fmt: skip


if __name__ == "__main__":
    main()
