"""Per-execution overhead: N sequential trivial executions through the hub (one attached
client, each waits for its ``done`` before the next is sent) versus ``jupyter_client``
talking to the same kind of kernel directly (AsyncKernelManager/AsyncKernelClient over IPC,
execute, then wait for the ``execute_reply`` AND the ``idle`` status on iopub — what the
agent waits for), for R and Python, in one run.

Executions of the two paths are interleaved one by one (hub, direct, direct, hub, …) so
that machine noise hits both alike. Both are warmed up first.

Usage: .venv/bin/python bench/exec_overhead.py [--n 200] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _hub import Deadline, HubClient, fmt_ms, new_workspace, run_ok, running_hub, stats, table  # noqa: E402
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
GOAL = 1.3
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


async def main_async(n: int, budget: float) -> dict[str, Any]:
    deadline = Deadline(budget)
    results: dict[str, Any] = {"n": n, "cases": []}
    with running_hub() as hub, tempfile.TemporaryDirectory(prefix="bench-direct-") as tmp:
        token = hub.make_user("bench")
        direct = {lang: Direct(lang, tmp) for lang in KERNELS}
        try:
            async with HubClient(hub.url, token) as client:
                wid = await new_workspace(client, "overhead")
                async with client.attach(wid) as att:
                    for lang, d in direct.items():
                        await d.start()
                        await run_ok(att, "1", lang)  # starts the session's kernel
                    for lang, label, code in CASES:
                        d = direct[lang]
                        for _ in range(WARMUP):
                            await run_ok(att, code, lang, timeout=STEP_TIMEOUT)
                            await d.execute(code)
                        hub_t: list[float] = []
                        dir_t: list[float] = []
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

                        for i in range(n):
                            deadline.check(f"exec_overhead {lang} {label}")
                            first, second = (
                                (one_hub, one_direct) if i % 2 == 0 else (one_direct, one_hub)
                            )
                            await first()
                            await second()
                        results["cases"].append(
                            {
                                "language": lang,
                                "code": label,
                                "hub": hub_t,
                                "direct": dir_t,
                                "agent": agent_t,
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
        rows.append(
            [
                case["language"],
                f"`{case['code']}`",
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
        f"Sequential trivial executions, N={data['n']} per path and case (after {WARMUP} warm-up each)\n\n"
        + table(
            [
                "lang",
                "code",
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
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data = asyncio.run(main_async(args.n, args.budget))
    text = report(data)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"data": data, "report": text}, indent=1))


if __name__ == "__main__":
    main()
