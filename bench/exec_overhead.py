"""Per-execution overhead: N sequential trivial executions through the hub (one attached
client, each waits for its ``done`` before the next is sent) versus ``jupyter_client``
talking to the same kind of kernel directly (AsyncKernelManager/AsyncKernelClient over IPC,
execute, then wait for the ``execute_reply`` AND the ``idle`` status on iopub — what the
agent waits for), for R and Python, in one run.

Executions of the two paths are interleaved one by one (hub, direct, direct, hub, …) so
that machine noise hits both alike. Both are warmed up first.

``--before REV`` adds a third path, in the same run and interleaved the same way: a second
hub running the code of git revision REV (a temporary worktree and venv, as
``isolation.before_env`` makes them; its agents and kernels run that code too), so a change
to the path is measured against the previous implementation side by side. The sandbox
shows a session only this venv's interpreter and package, not the before venv's, so with
``--before`` both hubs run with ``RSPARKHUB_SANDBOX=none`` (the report says so).

``--files N`` first writes N small files (100 per directory, under ``data/``) into each
hub's workspace from its session — a workspace of many files, where the agent's look for
files an execution wrote is part of every execution's cost.

Usage: .venv/bin/python bench/exec_overhead.py [--n 200] [--before REV] [--files N] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _hub import (  # noqa: E402
    Deadline,
    HubClient,
    fmt_ms,
    new_workspace,
    publish,
    run_ok,
    running_hub,
    stats,
    table,
)
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

KERNELS = {"r": "ir", "python": "python3"}
# (language, label, code): a value that is displayed, and a silent assignment
CASES = [
    ("r", "1", "1"),
    ("r", "x <- 1", "x <- 1"),
    ("python", "1", "1"),
    ("python", "x = 1", "x = 1"),
]
WARMUP = 20
_MAKE_FILES = """\
import os
for _i in range({n}):
    os.makedirs(f"data/d{{_i // 100}}", exist_ok=True)
    with open(f"data/d{{_i // 100}}/f{{_i}}.csv", "w") as _f:
        _f.write("x\\n1\\n")
"""
GOAL = 1.2  # issue 14
STEP_TIMEOUT = 30.0


class Direct:
    def __init__(self, language: str, tmp: str) -> None:
        self.km = AsyncKernelManager(
            kernel_name=KERNELS[language], transport="ipc", ip=str(Path(tmp) / f"k-{language}")
        )
        self.tmp = tmp
        self.kc: Any = None

    async def start(self) -> None:
        await self.km.start_kernel(
            cwd=self.tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.kc = self.km.client()
        self.kc.start_channels()
        await self.kc.wait_for_ready(timeout=60)

    async def execute(self, code: str) -> None:
        kc = self.kc
        msg_id = kc.execute(code)
        reply = None
        while reply is None:
            m = await kc.get_shell_msg(timeout=STEP_TIMEOUT)
            if m["parent_header"].get("msg_id") == msg_id:
                reply = m
        while True:
            m = await kc.get_iopub_msg(timeout=STEP_TIMEOUT)
            if (
                m["parent_header"].get("msg_id") == msg_id
                and m["msg_type"] == "status"
                and m["content"]["execution_state"] == "idle"
            ):
                break
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"direct execution failed: {reply['content']}")

    async def close(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
        await self.km.shutdown_kernel(now=True)


async def main_async(
    n: int, budget: float, before: str | None = None, files: int = 0
) -> dict[str, Any]:
    deadline = Deadline(budget)
    results: dict[str, Any] = {"n": n, "cases": [], "before": None, "files": files}
    with contextlib.ExitStack() as stack:
        # The sandbox shows a session only this venv's Python and package: the before
        # venv's path entries are not in it, so with --before both hubs run without it.
        env_vars = {"RSPARKHUB_SANDBOX": "none"} if before is not None else None
        results["sandbox"] = "none" if before is not None else "default"
        hub = stack.enter_context(running_hub(env_vars))
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-direct-"))
        hub_b = None
        if before is not None:
            from isolation import before_env

            env = stack.enter_context(before_env(before))
            hub_b = stack.enter_context(running_hub(env_vars, python=env.python))
            results["before"] = env.commit
        await _measure(hub, hub_b, tmp, n, deadline, results)
    return results


async def _measure(
    hub: Any, hub_b: Any, tmp: str, n: int, deadline: Deadline, results: dict[str, Any]
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        token = hub.make_user("bench")
        direct = {lang: Direct(lang, tmp) for lang in KERNELS}
        att_b: Any = None
        try:
            client = await stack.enter_async_context(HubClient(hub.url, token))
            wid = await new_workspace(client, "overhead")
            att = await stack.enter_async_context(client.attach(wid))
            if hub_b is not None:
                client_b = await stack.enter_async_context(
                    HubClient(hub_b.url, hub_b.make_user("bench"))
                )
                att_b = await stack.enter_async_context(
                    client_b.attach(await new_workspace(client_b, "overhead"))
                )
            for a in [att] + ([att_b] if att_b is not None else []):
                if results["files"]:
                    await run_ok(a, _MAKE_FILES.format(n=results["files"]), "python", timeout=600)
            for lang, d in direct.items():
                await d.start()
                await run_ok(att, "1", lang)  # starts the session's kernel
                if att_b is not None:
                    await run_ok(att_b, "1", lang)
            for lang, label, code in CASES:
                d = direct[lang]
                for _ in range(WARMUP):
                    await run_ok(att, code, lang, timeout=STEP_TIMEOUT)
                    await d.execute(code)
                    if att_b is not None:
                        await run_ok(att_b, code, lang, timeout=STEP_TIMEOUT)
                hub_t: list[float] = []
                dir_t: list[float] = []
                bef_t: list[float] = []
                agent_t: list[float] = []  # the agent's own duration_ms, in s

                async def one_hub(
                    code: str = code,
                    lang: str = lang,
                    hub_t: list[float] = hub_t,
                    agent_t: list[float] = agent_t,
                ) -> None:
                    t = time.perf_counter()
                    res = await run_ok(att, code, lang, timeout=STEP_TIMEOUT)
                    hub_t.append(time.perf_counter() - t)
                    agent_t.append(res.done.duration_ms / 1000)

                async def one_direct(
                    code: str = code, d: Direct = d, dir_t: list[float] = dir_t
                ) -> None:
                    t = time.perf_counter()
                    await d.execute(code)
                    dir_t.append(time.perf_counter() - t)

                async def one_before(
                    code: str = code, lang: str = lang, bef_t: list[float] = bef_t
                ) -> None:
                    t = time.perf_counter()
                    await run_ok(att_b, code, lang, timeout=STEP_TIMEOUT)
                    bef_t.append(time.perf_counter() - t)

                paths = [one_hub, one_direct] + ([one_before] if att_b else [])
                for i in range(n):
                    deadline.check(f"exec_overhead {lang} {label}")
                    for path in paths[i % len(paths) :] + paths[: i % len(paths)]:
                        await path()
                results["cases"].append(
                    {
                        "language": lang,
                        "code": label,
                        "hub": hub_t,
                        "direct": dir_t,
                        "agent": agent_t,
                        "before": bef_t,
                    }
                )
            await client.stop_session(wid)
        finally:
            for d in direct.values():
                try:
                    await d.close()
                except Exception:  # noqa: BLE001
                    pass
    return results


def report(data: dict[str, Any]) -> str:
    rows = []
    for case in data["cases"]:
        h, d, a = stats(case["hub"]), stats(case["direct"]), stats(case["agent"])
        ratio = h["median"] / d["median"]
        before: list[str] = []
        if case.get("before"):
            b = stats(case["before"])
            before = [
                fmt_ms(b["median"]),
                f"{b['median'] / d['median']:.2f}×",
                f"{h['median'] / b['median']:.2f}×",
            ]
        rows.append(
            [
                case["language"],
                f"`{case['code']}`",
                *before,
                fmt_ms(h["median"]),
                fmt_ms(h["p95"]),
                fmt_ms(d["median"]),
                fmt_ms(d["p95"]),
                f"{ratio:.2f}×",
                f"{h['p95'] / d['p95']:.2f}×",
                fmt_ms(h["median"] - d["median"]),
                fmt_ms(a["median"]),
                "yes" if ratio <= GOAL else "**NO**",
            ]
        )
    note = (
        "\n\n`agent's duration_ms`: the median time the agent itself reports in `done` (from "
        "taking the request off its queue to emitting `done`, i.e. kernel round trip + agent "
        "work); the rest of the hub column is hub + client + WebSocket hops."
    )
    return (
        f"Sequential trivial executions, N={data['n']} per path and case (after {WARMUP} warm-up each"
        + (f"; {data['files']} files in each hub's workspace" if data.get("files") else "")
        + ("; both hubs without the sandbox" if data.get("sandbox") == "none" else "")
        + ")\n\n"
        + table(
            [
                "lang",
                "code",
                *(
                    [f"before ({data['before']}) median", "before/direct", "hub/before"]
                    if data.get("before")
                    else []
                ),
                "hub median",
                "hub p95",
                "direct median",
                "direct p95",
                "ratio (median)",
                "ratio (p95)",
                "hub − direct",
                "agent's duration_ms",
                f"≤ {GOAL}×?",
            ],
            rows,
        )
        + note
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--budget", type=float, default=600, help="seconds")
    ap.add_argument("--before", help="also measure a hub running this git revision")
    ap.add_argument("--files", type=int, default=0, help="files in each workspace first")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data = asyncio.run(main_async(args.n, args.budget, args.before, args.files))
    publish(data, report(data), args.json)


if __name__ == "__main__":
    main()
