"""Shared helpers for the benchmarks: a real hub in a temp dir, stats, machine facts.

``running_hub()`` starts ``rsparkhub serve`` on a free 127.0.0.1 port with its own temporary
data directory, exactly as ``tests/conftest.py`` does (it reuses its ``HubProcess``), and on
exit stops the hub and kills every process whose command line names that data directory
(the session agents and their kernels, which outlive the hub by design). The cleanup also
runs from ``atexit`` so an exception or Ctrl-C does not leave sessions behind.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as _dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

import psutil  # noqa: E402

from rsparkhub import protocol as P  # noqa: E402
from rsparkhub.client import Attachment, HubClient  # noqa: E402

from conftest import HubProcess  # noqa: E402

__all__ = [
    "Attachment",
    "HubClient",
    "HubProcess",
    "P",
    "running_hub",
    "session_processes",
    "tree_rss",
    "stats",
    "fmt_ms",
    "table",
    "machine_facts",
    "new_workspace",
    "run_ok",
]

_LIVE: list[tuple[HubProcess, Path]] = []


def _kill_tree_of(data_dir: Path) -> None:
    """Kill (by pid) every process whose cmdline mentions data_dir, children first."""
    me = os.getpid()
    victims: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            if p.pid != me and str(data_dir) in " ".join(p.info["cmdline"] or []):
                victims[p.pid] = p
                for c in p.children(recursive=True):
                    victims[c.pid] = c
        except psutil.Error:
            pass
    for p in victims.values():
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(list(victims.values()), timeout=5)


def _kill_sandboxes_of(data_dir: Path) -> None:
    """The test suite's clean-up of a hub's sandboxes (a hub that predates the sandbox
    module has none)."""
    try:
        from conftest import remove_sandboxes
    except ImportError:
        return
    try:
        remove_sandboxes(data_dir)
    except Exception as exc:  # noqa: BLE001 - best effort in a clean-up
        print(f"could not remove the sandboxes of {data_dir}: {exc}", file=sys.stderr)


def _cleanup(hub: HubProcess, tmp: Path) -> None:
    try:
        hub.stop()
    finally:
        _kill_tree_of(hub.data_dir)
        _kill_sandboxes_of(hub.data_dir)
        shutil.rmtree(tmp, ignore_errors=True)


def _cleanup_all() -> None:
    while _LIVE:
        _cleanup(*_LIVE.pop())


atexit.register(_cleanup_all)


def _on_sigterm(signum: int, _frame: Any) -> None:
    # SIGTERM (e.g. from `timeout`) would skip atexit; the hub runs in its own session and
    # would survive us. Exit through SystemExit so the cleanup runs.
    raise SystemExit(128 + signum)


if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _on_sigterm)


@contextmanager
def running_hub(
    env: dict[str, str] | None = None, python: str | None = None
) -> Iterator[HubProcess]:
    """A fresh hub (SQLite, default settings) in a temp dir; cleaned up on exit.

    ``python``: run the hub's CLI (``serve`` and the user/token commands) with this
    interpreter instead of the venv's, e.g. one whose sys.path holds another checkout."""
    tmp = Path(tempfile.mkdtemp(prefix="rsparkhub-bench-"))
    hub = HubProcess(tmp / "data", env)
    if python is not None:
        # `python .venv/bin/rsparkhub …` runs the console script with that interpreter
        hub.prefix = [python]
    _LIVE.append((hub, tmp))
    try:
        hub.start()
        yield hub
    finally:
        if (hub, tmp) in _LIVE:
            _LIVE.remove((hub, tmp))
        _cleanup(hub, tmp)


# --------------------------------------------------------------------------- hub usage


async def new_workspace(client: HubClient, prefix: str = "bench") -> str:
    ws = await client.ensure_workspace(f"{prefix}-{uuid.uuid4().hex[:8]}")
    return str(ws["id"])


async def run_ok(att: Attachment, code: str, language: str, timeout: float = 120) -> Any:
    res = await att.run(code, language=language, timeout=timeout)
    if not res.ok:
        raise RuntimeError(
            f"{language} execution of {code!r} failed: {res.done} {res.errors} {res.stderr[-500:]}"
        )
    return res


async def stop_session(client: HubClient, workspace_id: str) -> None:
    await client.stop_session(workspace_id)


# --------------------------------------------------------------------------- processes


def session_processes(session_id: str) -> list[psutil.Process]:
    """The processes of one session: everything whose cmdline names the session id (the
    bwrap wrapper, the agent, kernels whose connection file lives in the session's runtime
    dir) plus all their descendants."""
    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            if session_id in " ".join(p.info["cmdline"] or []):
                found[p.pid] = p
                for c in p.children(recursive=True):
                    found[c.pid] = c
        except psutil.Error:
            pass
    return list(found.values())


def tree_rss(procs: list[psutil.Process]) -> tuple[int, list[tuple[str, int]]]:
    total = 0
    parts: list[tuple[str, int]] = []
    for p in procs:
        try:
            rss = p.memory_info().rss
            cmd = p.cmdline()
        except psutil.Error:
            continue
        total += rss
        parts.append((_short_cmd(cmd), rss))
    return total, parts


def _short_cmd(cmd: list[str]) -> str:
    if not cmd:
        return "?"
    text = " ".join(cmd)
    if "bwrap" in Path(cmd[0]).name:
        return "bwrap"
    if Path(cmd[0]).name in ("pasta", "passt", "setpriv"):
        return Path(cmd[0]).name  # its argv holds the agent's: test it first
    if "rsparkhub.agent" in text:
        return "agent (python -m rsparkhub.agent)"
    if "ipykernel" in text:
        return "python kernel (ipykernel)"
    if "IRkernel" in text or Path(cmd[0]).name in ("R", "exec/R"):
        return "R kernel (IRkernel)"
    if "bash_kernel" in text:
        return "bash kernel"
    return Path(cmd[0]).name


# --------------------------------------------------------------------------- stats & output


def stats(xs: list[float]) -> dict[str, float]:
    s = sorted(xs)
    n = len(s)

    def rank(q: float) -> float:
        return s[min(n - 1, max(0, int(round(q * n)) - 1))]

    return {
        "n": n,
        "median": statistics.median(s),
        "min": s[0],
        "max": s[-1],
        "mean": statistics.fmean(s),
        "p90": rank(0.90),
        "p95": rank(0.95),
    }


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.2f} ms"


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (also readable on a terminal)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    return "\n".join(out)


def publish(data: Any, text: str, json_path: Path | None) -> None:
    """Print a bench's table; with ``--json FILE`` also keep its data and table there."""
    print(text)
    if json_path is not None:
        json_path.write_text(json.dumps({"data": data, "report": text}, indent=1))


def machine_facts() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        r = subprocess.run(["R", "--version"], capture_output=True, text=True, timeout=30)
        r_version = r.stdout.splitlines()[0] if r.stdout else "not installed"
    except (OSError, subprocess.TimeoutExpired):
        r_version = "not installed"
    try:
        bw = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, timeout=10)
        bwrap = bw.stdout.strip() or "?"
    except OSError:
        bwrap = "not installed"
    import jupyter_client

    try:
        from importlib.metadata import version

        ipyk = version("ipykernel")
    except Exception:  # noqa: BLE001
        ipyk = "?"
    try:
        irk = subprocess.run(
            ["Rscript", "-e", "cat(as.character(packageVersion('IRkernel')))"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except OSError:
        irk = "?"
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": f"{psutil.cpu_count(logical=True)} logical / {psutil.cpu_count(logical=False)} physical",
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "r": r_version,
        "jupyter_client": jupyter_client.__version__,
        "ipykernel": ipyk,
        "IRkernel": irk or "?",
        "bwrap": bwrap,
        "git": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip(),
    }


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Deadline:
    """A wall-clock budget for a benchmark's loops."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        if time.monotonic() > self.end:
            raise TimeoutError(f"benchmark time budget exceeded during {what}")


RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def record_section(
    title: str,
    script: str,
    text: str,
    facts: dict[str, str],
    wall: float,
    load: tuple[str, str],
) -> None:
    """Write (or replace) the section ``## {title}`` of bench/RESULTS.md: the machine facts
    of the run, then ``text``."""
    fact_rows = [[k, v] for k, v in facts.items()]
    fact_rows.append(["load average (1/5/15 min) before → after", f"{load[0]} → {load[1]}"])
    body = (
        f"## {title} — ran in {wall:.0f} s\n\n"
        f"Recorded by `{script} --record` (its own run, on this machine):\n\n"
        + table(["fact", "value"], fact_rows)
        + "\n\n"
        + text
        + "\n"
    )
    old = RESULTS.read_text() if RESULTS.exists() else "# rsparkhub benchmark results\n"
    m = re.search(r"^## " + re.escape(title) + r".*?(?=^## |\Z)", old, re.S | re.M)
    if m:
        new = old[: m.start()] + body + ("\n" if m.end() < len(old) else "") + old[m.end() :]
    else:
        new = old.rstrip("\n") + "\n\n" + body
    RESULTS.write_text(new)
    print(f"wrote the section of {RESULTS}")


def recorded_main(
    doc: str,
    title: str,
    script: str,
    measure: Callable[[int, Deadline], Coroutine[Any, Any, dict[str, Any]]],
    report: Callable[[dict[str, Any]], str],
    *,
    n: int = 5,
    budget_s: float = 1200.0,
    check: Callable[[], str | None] | None = None,
) -> None:
    """The command line the recording benches share: ``--n``, ``--json OUT`` (the raw data,
    with machine facts, written first), ``--record`` (the RESULTS.md section) and
    ``--report OUT.json`` (no run: the tables of an earlier ``--json``). ``check``: a reason
    not to run, or None."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--n", type=int, default=n, help="timed runs per cell")
    ap.add_argument("--json", type=Path, help="write the raw data here")
    ap.add_argument("--record", action="store_true", help="write the section of RESULTS.md")
    ap.add_argument("--report", type=Path, help="no run: print the tables of a --json file")
    args = ap.parse_args()
    if args.report:
        earlier = json.loads(args.report.read_text())
        text = report(earlier)
        print(text)
        if args.record and "facts" in earlier:
            record_section(title, script, text, earlier["facts"], earlier["wall_s"],
                           tuple(earlier["load"]))  # fmt: skip
        return
    if check is not None and (why := check()):
        sys.exit(why)
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t0 = time.monotonic()
    data = asyncio.run(measure(args.n, Deadline(budget_s)))
    wall = time.monotonic() - t0
    load1 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    facts = machine_facts()
    if args.json:  # first: the tables can be made again from it (--report)
        args.json.write_text(
            json.dumps({**data, "facts": facts, "wall_s": wall, "load": [load0, load1]})
        )
    text = report(data)
    print(text)
    if args.record:
        record_section(title, script, text, facts, wall, (load0, load1))
