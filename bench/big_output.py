"""Big output: a session prints 5 / 20 / 50 MB to stdout (100-byte lines ``"x"*99 + "\\n"``
written 1 MB at a time); time until the client has received all of it (``done``), the
hub's RSS before and its peak during the run (psutil, sampled every 50 ms), and a check
that the client received exactly the bytes printed (length and SHA-256).

Python: one execution, ``for _ in range(N): sys.stdout.write(chunk)``.
R: one execution of N separate top-level ``cat(chunk)`` expressions (IRkernel sends a
top-level expression's output when it finishes, so a single loop would arrive in one piece).

Each (language, size) runs on a fresh hub so that "before" and "peak" are not polluted by
the previous run. The session's own process tree is sampled too (the agent buffers up to
16 MiB of unacknowledged output, then Python and bash kernels wait: see agent/launch.py).

Baseline: the same code sent straight to a kernel with jupyter_client (time until idle).

Usage: .venv/bin/python bench/big_output.py [--sizes 5,20,50] [--langs python,r] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import psutil  # noqa: E402
from _hub import (  # noqa: E402
    Deadline,
    HubClient,
    P,
    _short_cmd,  # noqa: E402
    mib,
    new_workspace,
    publish,
    run_ok,
    running_hub,
    session_processes,
    table,
)

LINE = "x" * 99 + "\n"
LINES_PER_CHUNK = 10_000  # 1 MB per write
CHUNK = LINE * LINES_PER_CHUNK
RUN_TIMEOUT = 300.0
SAMPLE_S = 0.05
SILENCE_TIMEOUT = 60.0  # flush-every-line mode: give up when nothing arrives for this long


def code_for(language: str, mb: int, flushy: bool = False) -> str:
    if flushy:  # one kernel message per 100-byte line: many small iopub messages
        assert language == "python"
        return (
            "import sys\n_l = 'x' * 99 + '\\n'\n"
            f"for _ in range({mb * LINES_PER_CHUNK}):\n"
            "    sys.stdout.write(_l)\n    sys.stdout.flush()\n"
        )
    if language == "python":
        return (
            "import sys\n"
            f"_c = ('x' * 99 + '\\n') * {LINES_PER_CHUNK}\n"
            f"for _ in range({mb}):\n"
            "    sys.stdout.write(_c)\n"
            "sys.stdout.flush()\n"
            "del _c\n"
        )
    setup = f'.c <- strrep(paste0(strrep("x", 99), "\\n"), {LINES_PER_CHUNK})\n'
    return setup + "cat(.c)\n" * mb + "rm(.c)\n"


class Sampler(threading.Thread):
    """Peak RSS of one process (and optionally a process tree) every SAMPLE_S seconds."""

    def __init__(self, pid: int, session_id: str, max_s: float) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.session_procs = session_processes(session_id)
        self.peak = 0
        self.session_peak = 0
        self.proc_peaks: dict[int, int] = {}  # per session process
        self.samples = 0
        self.max_s = max_s
        self._halt = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + self.max_s
        while not self._halt.is_set() and time.monotonic() < end:
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            tot = 0
            for p in self.session_procs:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                tot += rss
                self.proc_peaks[p.pid] = max(self.proc_peaks.get(p.pid, 0), rss)
            self.session_peak = max(self.session_peak, tot)
            self.samples += 1
            self._halt.wait(SAMPLE_S)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


async def one(language: str, mb: int, flushy: bool = False) -> dict[str, Any]:
    expected_len = mb * len(CHUNK)
    expected = hashlib.sha256()
    for _ in range(mb):
        expected.update(CHUNK.encode())
    with running_hub() as hub:
        assert hub.proc is not None
        token = hub.make_user("bench")
        async with HubClient(hub.url, token) as client:
            wid = await new_workspace(client, "bigout")
            try:
                async with client.attach(wid) as att:
                    await run_ok(att, "1", language)  # kernel started and warm
                    await run_ok(att, "1", language)
                    await asyncio.sleep(1.0)
                    hub_p = psutil.Process(hub.proc.pid)
                    before = hub_p.memory_info().rss
                    sess_procs = session_processes(att.session_id)
                    per_before = {
                        p.pid: (_short_cmd(p.cmdline()), p.memory_info().rss) for p in sess_procs
                    }
                    sess_before = sum(rss for _, rss in per_before.values())
                    sampler = Sampler(hub.proc.pid, att.session_id, RUN_TIMEOUT)
                    sampler.start()
                    got = hashlib.sha256()
                    n_bytes = 0
                    n_events = 0
                    other: list[str] = []
                    status = "?"
                    t0 = time.perf_counter()
                    try:
                        try:
                            async for ev in att.execute(
                                code_for(language, mb, flushy),
                                language=language,
                                timeout=SILENCE_TIMEOUT if flushy else RUN_TIMEOUT,
                            ):  # type: ignore[arg-type]
                                if isinstance(ev, P.StreamEvent) and ev.name == "stdout":
                                    b = ev.text.encode()
                                    got.update(b)
                                    n_bytes += len(b)
                                    n_events += 1
                                elif isinstance(ev, P.DoneEvent):
                                    status = ev.status
                                else:
                                    other.append(
                                        ev.type
                                        if not isinstance(ev, P.StreamEvent)
                                        else f"stderr:{ev.text[:200]}"
                                    )
                        except TimeoutError:
                            status = f"NO done ({SILENCE_TIMEOUT:.0f} s of silence)"
                        elapsed = time.perf_counter() - t0
                    finally:
                        sampler.stop()
                    await asyncio.sleep(1.0)
                    after = hub_p.memory_info().rss
            finally:
                try:
                    await client.stop_session(wid)
                except Exception:  # noqa: BLE001
                    pass
    return {
        "language": language,
        "mb": mb,
        "flushy": flushy,
        "seconds": elapsed,
        "status": status,
        "bytes_expected": expected_len,
        "bytes_received": n_bytes,
        "exact": n_bytes == expected_len and got.hexdigest() == expected.hexdigest(),
        "stream_events": n_events,
        "other_events": other[:10],
        "hub_before": before,
        "hub_peak": sampler.peak,
        "hub_after": after,
        "session_before": sess_before,
        "session_peak": sampler.session_peak,
        "session_growth_by_process": {
            name: sampler.proc_peaks.get(pid, rss) - rss
            for pid, (name, rss) in per_before.items()
            if "bwrap" not in name
        },
        "samples": sampler.samples,
    }


async def direct(language: str, mb: int, flushy: bool = False) -> dict[str, Any]:
    """Baseline: the same code through jupyter_client straight to a kernel (IPC)."""
    import subprocess
    import tempfile

    from jupyter_client.manager import AsyncKernelManager

    with tempfile.TemporaryDirectory(prefix="bench-direct-") as tmp:
        km = AsyncKernelManager(
            kernel_name={"r": "ir", "python": "python3"}[language],
            transport="ipc",
            ip=str(Path(tmp) / "k"),
        )
        await km.start_kernel(cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
            n_bytes = 0
            t0 = time.perf_counter()
            msg_id = kc.execute(code_for(language, mb, flushy))
            end = time.monotonic() + RUN_TIMEOUT
            idle = False
            while time.monotonic() < end:
                try:
                    m = await kc.get_iopub_msg(timeout=SILENCE_TIMEOUT if flushy else RUN_TIMEOUT)
                except queue.Empty:
                    break  # the idle status itself was dropped

                if m["parent_header"].get("msg_id") != msg_id:
                    continue
                if m["msg_type"] == "stream" and m["content"]["name"] == "stdout":
                    n_bytes += len(m["content"]["text"].encode())
                if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                    idle = True
                    break
            elapsed = time.perf_counter() - t0
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)
    return {"seconds": elapsed, "bytes": n_bytes, "idle": idle}


async def main_async(
    langs: list[str],
    sizes: list[int],
    budget: float,
    with_direct: bool = True,
    flushy_sizes: list[int] | None = None,
) -> dict[str, Any]:
    deadline = Deadline(budget)
    runs = []
    for lang in langs:
        for mb in sizes:
            deadline.check(f"big_output {lang} {mb} MB")
            r = await one(lang, mb)
            if with_direct:
                r["direct"] = await direct(lang, mb)
            print(
                f"  {lang} {mb} MB: {r['seconds']:.2f} s, exact={r['exact']}, "
                f"hub {mib(r['hub_before'])} → peak {mib(r['hub_peak'])}",
                file=sys.stderr,
            )
            runs.append(r)
    flushy_runs = []
    for mb in flushy_sizes or []:
        deadline.check(f"big_output flush-every-line {mb} MB")
        r = await one("python", mb, flushy=True)
        if with_direct:
            r["direct"] = await direct("python", mb, flushy=True)
        print(
            f"  python flush-every-line {mb} MB: {r['bytes_received']} B, {r['status']}",
            file=sys.stderr,
        )
        flushy_runs.append(r)
    return {"runs": runs, "flushy_runs": flushy_runs}


def report(data: dict[str, Any]) -> str:
    rows = []
    for r in data["runs"]:
        rows.append(
            [
                r["language"],
                f"{r['mb']} MB",
                f"{r['seconds']:.2f} s",
                f"{r['mb'] / r['seconds']:.1f} MB/s",
                "yes"
                if r["exact"]
                else f"**NO** ({r['bytes_received']} of {r['bytes_expected']} B)",
                r["stream_events"],
                mib(r["hub_before"]),
                mib(r["hub_peak"]),
                mib(r["hub_peak"] - r["hub_before"]),
                mib(r["hub_after"]),
                mib(r["session_peak"] - r["session_before"]),
                ", ".join(
                    f"{k.split(' ')[0]} +{v / 2**20:.0f}"
                    for k, v in r.get("session_growth_by_process", {}).items()
                ),
                f"{r['direct']['seconds']:.2f} s" if "direct" in r else "-",
            ]
        )
    return "Big stdout, one execution, client counts every byte; fresh hub per row\n\n" + table(
        [
            "lang",
            "size",
            "time to all received",
            "throughput",
            "exact bytes?",
            "stream events",
            "hub RSS before",
            "hub RSS peak",
            "peak − before",
            "hub RSS 1 s after",
            "session tree peak − before",
            "peak growth per process (MiB)",
            "direct jupyter_client time",
        ],
        rows,
    )


def report_flushy(data: dict[str, Any]) -> str:
    if not data.get("flushy_runs"):
        return ""
    rows = []
    for r in data["flushy_runs"]:
        d = r.get("direct") or {}
        rows.append(
            [
                f"{r['mb']} MB in {r['mb'] * LINES_PER_CHUNK} flushed lines",
                f"{r['bytes_received']:,} of {r['bytes_expected']:,} B"
                + (
                    ""
                    if r["exact"]
                    else f" (**{100 * (1 - r['bytes_received'] / r['bytes_expected']):.0f}% lost**)"
                ),
                r["status"],
                f"{r['seconds']:.1f} s",
                f"{d['bytes']:,} B, idle {'seen' if d['idle'] else '**never seen**'}" if d else "-",
            ]
        )
    return (
        "\n\nPython printing line by line with `sys.stdout.flush()` after every line (one iopub "
        "message per line)\n\n"
        + table(
            ["output", "client received", "done", "time", "direct jupyter_client received"], rows
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5,20,50")
    ap.add_argument("--langs", default="python,r")
    ap.add_argument("--budget", type=float, default=900, help="seconds")
    ap.add_argument("--flushy", default="", help="MB sizes for the flush-every-line Python run")
    ap.add_argument("--no-direct", action="store_true", help="skip the jupyter_client baseline")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    langs = args.langs.split(",")
    data = asyncio.run(
        main_async(
            langs,
            sizes,
            args.budget,
            not args.no_direct,
            [int(x) for x in args.flushy.split(",") if x],
        )
    )
    publish(data, report(data) + report_flushy(data), args.json)


if __name__ == "__main__":
    main()
