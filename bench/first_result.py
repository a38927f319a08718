"""Time to first result: attach to a freshly created workspace (which starts a new session)
until the result of ``1+1`` arrives, for R and Python; N repetitions each, the session
stopped (DELETE /api/workspaces/{id}/session) after every run.

Baseline: ``jupyter_client.AsyncKernelManager`` started directly (same kernelspec, IPC
transport like the agent) + ``wait_for_ready`` + execute ``1+1`` until the value arrives
(``execute_result``; IRkernel sends ``display_data``).

Usage: .venv/bin/python bench/first_result.py [--n 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _hub import (  # noqa: E402
    Deadline,
    HubClient,
    P,
    fmt_ms,
    new_workspace,
    publish,
    running_hub,
    stats,
    table,
)
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

KERNELS = {"r": "ir", "python": "python3"}
RUN_TIMEOUT = 120.0


async def hub_once(client: HubClient, language: str) -> dict[str, float]:
    """One fresh workspace: attach, execute 1+1, timestamp the stream's milestones."""
    wid = await new_workspace(client, f"first-{language}")
    t0 = time.perf_counter()
    marks: dict[str, float] = {}
    try:
        async with client.attach(wid) as att:
            marks["welcome"] = time.perf_counter()
            rid = uuid.uuid4().hex
            await att.send(P.ExecuteRequest(id=rid, code="1+1", language=language))
            async for msg in att.messages(timeout=RUN_TIMEOUT):
                if msg.get("type") != "event":
                    continue
                ev = P.parse_event(msg["event"])
                now = time.perf_counter()
                if isinstance(ev, P.StatusEvent) and ev.language == language:
                    # "starting": the agent is up and has begun starting the kernel;
                    # the first "idle": the kernel is ready (init code included)
                    marks.setdefault(f"kernel_{ev.state}", now)
                elif isinstance(ev, P.ResultEvent) and ev.request_id == rid:
                    marks.setdefault("result", now)
                    if "2" not in ev.data.get("text/plain", ""):
                        raise RuntimeError(f"unexpected result {ev.data}")
                elif isinstance(ev, P.DoneEvent) and ev.request_id == rid:
                    marks["done"] = now
                    if ev.status != "ok":
                        raise RuntimeError(f"{language} 1+1 failed: {ev}")
                    break
                elif isinstance(ev, P.SessionEvent) and ev.state in ("dead", "stopped"):
                    raise RuntimeError(f"session ended: {ev}")
            if "result" not in marks:
                raise RuntimeError(f"{language}: no result event")
    finally:
        ts = time.perf_counter()
        await client.stop_session(wid)
        t_stop = time.perf_counter() - ts
    out = {k: v - t0 for k, v in marks.items()}
    out["first_result"] = out.pop("result")
    out["stop"] = t_stop
    return out


async def direct_once(language: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-direct-") as tmp:
        t0 = time.perf_counter()
        km = AsyncKernelManager(
            kernel_name=KERNELS[language], transport="ipc", ip=str(Path(tmp) / "k")
        )
        await km.start_kernel(cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=RUN_TIMEOUT)
            t_ready = time.perf_counter()
            msg_id = kc.execute("1+1")
            t_result = 0.0
            deadline = time.monotonic() + RUN_TIMEOUT
            while time.monotonic() < deadline:
                msg = await kc.get_iopub_msg(timeout=RUN_TIMEOUT)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                # IRkernel sends the value as display_data, ipykernel as execute_result
                if msg["msg_type"] in ("execute_result", "display_data"):
                    t_result = time.perf_counter()
                    break
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
            if not t_result:
                raise RuntimeError("direct: no execute_result")
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=False)
    return {"first_result": t_result - t0, "ready": t_ready - t0}


async def main_async(n: int, budget: float) -> dict[str, Any]:
    deadline = Deadline(budget)
    out: dict[str, Any] = {"n": n, "hub": {}, "direct": {}}
    with running_hub() as hub:
        token = hub.make_user("bench")
        async with HubClient(hub.url, token, timeout=120) as client:
            for lang in KERNELS:
                # one unmeasured warm-up of each path (disk cache, R package loading)
                await hub_once(client, lang)
                await direct_once(lang)
                hub_runs: list[dict[str, float]] = []
                direct_runs: list[dict[str, float]] = []
                for _ in range(n):
                    deadline.check(f"first_result {lang}")
                    hub_runs.append(await hub_once(client, lang))
                    direct_runs.append(await direct_once(lang))
                out["hub"][lang] = hub_runs
                out["direct"][lang] = direct_runs
    return out


def report(data: dict[str, Any]) -> str:
    rows = []
    for lang in KERNELS:
        h = stats([r["first_result"] for r in data["hub"][lang]])
        d = stats([r["first_result"] for r in data["direct"][lang]])
        rows.append(
            [lang, "hub: attach → result", fmt_ms(h["median"]), fmt_ms(h["min"]), fmt_ms(h["max"])]
        )
        rows.append(
            [
                lang,
                "direct: KernelManager start → result",
                fmt_ms(d["median"]),
                fmt_ms(d["min"]),
                fmt_ms(d["max"]),
            ]
        )
        rows.append(
            [lang, "hub overhead (median − median)", fmt_ms(h["median"] - d["median"]), "", ""]
        )
    extra = []
    for lang in KERNELS:
        hr = data["hub"][lang]

        def med(key: str, runs: list[dict[str, float]] = hr) -> str:
            xs = [r[key] for r in runs if key in r]
            return fmt_ms(stats(xs)["median"]) if xs else "?"

        rd = stats([r["ready"] for r in data["direct"][lang]])
        extra.append(
            [
                lang,
                med("welcome"),
                med("kernel_starting"),
                med("kernel_idle"),
                med("first_result"),
                fmt_ms(rd["median"]),
                med("stop"),
            ]
        )
    return (
        f"Time to first result of `1+1`, new session per run, N={data['n']} per row\n\n"
        + table(["lang", "path", "median", "min", "max"], rows)
        + "\n\nMilestones (medians, from the start of attach; direct: from start_kernel)\n\n"
        + table(
            [
                "lang",
                "welcome",
                "agent up (kernel 'starting')",
                "kernel ready ('idle')",
                "result",
                "direct: kernel ready",
                "DELETE session took",
            ],
            extra,
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--budget", type=float, default=600, help="seconds")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data = asyncio.run(main_async(args.n, args.budget))
    publish(data, report(data), args.json)


if __name__ == "__main__":
    main()
