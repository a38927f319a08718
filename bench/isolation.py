"""Cost of session isolation (issue 20): session start, idle memory per session and
trivial-execute latency of the hub before isolation and of the working tree, side by side,
measured in one run.

"Before" is one of two baselines (``--baseline``):

* ``none`` (the default): the working tree itself with ``sandbox = 'none'`` and
  ``session_disk_mb = 0`` — sessions as plain child processes of the hub, its uid, the
  host's network, no cgroup, no seccomp, no disk. Both sides run the same code, so the
  difference is the isolation alone (setpriv, pasta, bubblewrap with seccomp, the cgroup,
  the session disk).
* ``commit``: the last commit before isolation (``BEFORE``: sessions in bubblewrap as the
  hub's uid with ``--ro-bind / /``, the host's network, no cgroup). Since #14's flow control
  patched the kernels' start-up, that commit's Python kernel starts with other arguments,
  and the run stops (the probe below): use it only with a commit whose kernels match.
  It is checked out as a
temporary git worktree and run with a throwaway venv whose only entry in site-packages is a
.pth file listing that worktree's ``src`` and then this venv's site-packages: every
dependency is the same, only ``rsparkhub`` is the old one, and the old spawner's
``sys.executable -m rsparkhub.agent`` (and the Python kernel, started with the agent's
interpreter) run the old code too. The venv gets a copy of this venv's ``python3``
kernelspec, so both kernels start with the same arguments. "After" is the working tree as
the other benchmarks run it (setpriv to the user's uid, pasta, bwrap with seccomp, a cgroup
per session). Both hubs run as this process's user (root in CI), SQLite, no per-user
databases, no Spark. Before measuring, a probe session on each hub checks that it runs the
intended code and isolation (interpreter and package of the hub, agent and kernel; the
agent's uid and network namespace; how the agent got its token) and the run stops if not.

Measured per hub, the two hubs' runs interleaved one by one (before, after, after, before,
…) so that the machine's drift hits both alike:

1. time to first result: attach to a fresh workspace until the result of ``1+1``, R and
   Python, N runs each, the session stopped after each (``first_result.hub_once``);
2. idle memory of one session with its R and Python kernels started and idle: the hub's own
   figure (GET /api/workspaces/{id}/session → ``memory_bytes``) and, the same way for both
   hubs, the RSS and PSS sums over the session's processes found from outside with psutil;
3. trivial-execute latency: N sequential executions of ``1`` in Python and R on that warm
   session (client round trip, as ``exec_overhead.py`` measures the hub path), median and
   p90, and the agent's own ``duration_ms``.

The whole is repeated (``--repeat``, fresh hubs each time); the tables pool the repeats and
show the spread between them.

Usage: .venv/bin/python bench/isolation.py [--baseline none|commit] [--n 5] [--exec-n 200]
           [--repeat 2] [--quick]
           [--json OUT] [--record] [--note TEXT]
       .venv/bin/python bench/isolation.py --from-json OUT [--record] [--note TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import psutil  # noqa: E402
from _hub import (  # noqa: E402
    ROOT,
    Attachment,
    Deadline,
    HubClient,
    HubProcess,
    _short_cmd,
    fmt_ms,
    machine_facts,
    mib,
    new_workspace,
    record_section,
    run_ok,
    running_hub,
    session_processes,
    stats,
    table,
)
from first_result import hub_once  # noqa: E402
from memory import measure  # noqa: E402

TITLE = "9. Isolation cost (`bench/isolation.py`)"
BEFORE = "2573c30"  # the last commit before isolation (issue 20)
SIDES = ("before", "after")
LANGS = ("python", "r")
GOAL = 1.10  # "Isolation may cost at most ~10%"
# the baseline "none": this tree without any isolation
NO_ISOLATION = {"RSPARKHUB_SANDBOX": "none", "RSPARKHUB_SESSION_DISK_MB": "0"}
SETTLE_S = 2.0
WARMUP = 20
STEP_TIMEOUT = 30.0
MAIN_SITE = sysconfig.get_paths()["purelib"]


# --------------------------------------------------------------------------- the old tree


@dataclass
class Env:
    """The code one hub runs: its interpreter and the directory ``rsparkhub`` comes from."""

    python: str
    src: Path
    commit: str
    hub_env: dict[str, str] | None = None  # the hub's settings (the baseline "none")
    same_tree: bool = False  # both sides run this tree: their token paths do not differ


def _git(*args: str, timeout: float = 120) -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def _imports_from(python: str) -> Path:
    """Where ``python`` imports rsparkhub from (run from /: the current directory plays
    no part)."""
    out = subprocess.run(
        [python, "-c", "import rsparkhub; print(rsparkhub.__file__)"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    if out.returncode != 0:
        raise RuntimeError(f"{python} cannot import rsparkhub: {out.stderr[-500:]}")
    return Path(out.stdout.strip()).resolve().parent.parent


@contextmanager
def before_env(commit: str) -> Iterator[Env]:
    """A worktree of ``commit`` and a venv that imports rsparkhub from it; both removed on
    exit, whatever happened."""
    tmp = Path(tempfile.mkdtemp(prefix="rsparkhub-isolation-"))
    tree = tmp / "tree"
    added = False
    try:
        _git("worktree", "add", "--detach", str(tree), commit)
        added = True
        venv = tmp / "venv"
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
        )
        python = str(venv / "bin" / "python")
        site = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        # Plain path lines: the .pth files of MAIN_SITE (the editable install of this
        # checkout among them) are not processed, so rsparkhub comes from the worktree.
        Path(site, "rsparkhub-before.pth").write_text(f"{tree / 'src'}\n{MAIN_SITE}\n")
        _copy_kernelspec(Path(sys.prefix), venv, python)
        env = Env(python, tree / "src", _git("rev-parse", "--short", commit))
        got = _imports_from(python)
        if got != env.src.resolve():
            raise RuntimeError(f"the before venv imports rsparkhub from {got}, not {env.src}")
        yield env
    finally:
        if added:
            try:
                _git("worktree", "remove", "--force", str(tree))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"could not remove the worktree {tree}: {exc}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _git("worktree", "prune")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass


def _copy_kernelspec(main_prefix: Path, venv: Path, python: str) -> None:
    """This venv's python3 kernelspec (if it has one) for the before venv, with its
    interpreter: without it the before kernel would be ipykernel's built-in spec, whose
    arguments differ (no -Xfrozen_modules=off)."""
    src = main_prefix / "share" / "jupyter" / "kernels" / "python3"
    if not (src / "kernel.json").exists():
        return
    dest = venv / "share" / "jupyter" / "kernels" / "python3"
    shutil.copytree(src, dest)
    spec = json.loads((dest / "kernel.json").read_text())
    spec["argv"][0] = python
    (dest / "kernel.json").write_text(json.dumps(spec, indent=1))


# --------------------------------------------------------------------------- one hub


@dataclass
class Side:
    name: str
    hub: HubProcess
    env: Env
    client: HubClient | None = None

    @property
    def c(self) -> HubClient:
        assert self.client is not None
        return self.client


def _role(p: psutil.Process) -> str:
    try:
        return _short_cmd(p.cmdline())
    except psutil.Error:
        return "?"


def _same_env(python: str, expected: str) -> bool:
    """The same environment: the interpreter's bin directory, not the interpreter itself
    (every venv's python is a link to the one pyenv Python; python vs python3 differ)."""
    return Path(python).absolute().parent == Path(expected).absolute().parent


def _netns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return "?"


PROBE = (
    "import os, sys, rsparkhub\n"
    "print('PROBE', sys.executable, os.path.dirname(os.path.dirname(rsparkhub.__file__)),"
    " os.getuid())"
)


async def probe(side: Side) -> dict[str, Any]:
    """Check that the hub, its agent and its kernels run the intended code with the
    intended isolation; return what was seen. Raises if anything is off."""
    assert side.hub.proc is not None
    hub_proc = psutil.Process(side.hub.proc.pid)
    problems: list[str] = []
    if not _same_env(hub_proc.cmdline()[0], side.env.python):
        problems.append(f"the hub runs {hub_proc.cmdline()[0]}, not {side.env.python}")
    wid = await new_workspace(side.c, f"probe-{side.name}")
    seen: dict[str, Any] = {}
    try:
        async with side.c.attach(wid) as att:
            res = await run_ok(att, PROBE, "python")
            await run_ok(att, "1", "r")
            line = next((ln for ln in res.stdout.splitlines() if ln.startswith("PROBE ")), "")
            _, kernel_python, kernel_src, kernel_uid = (line.split() + ["?"] * 4)[:4]
            procs = session_processes(att.session_id)
            roles = {p.pid: _role(p) for p in procs}
            agents = [p for p in procs if roles[p.pid].startswith("agent")]
            pykernels = [p for p in procs if roles[p.pid].startswith("python kernel")]
            if len(agents) != 1 or len(pykernels) != 1:
                raise RuntimeError(
                    f"{side.name}: expected one agent and one Python kernel in session "
                    f"{att.session_id}, found {sorted(roles.values())}"
                )
            agent, pykernel = agents[0], pykernels[0]
            acmd = agent.cmdline()
            seen = {
                "hub_python": hub_proc.cmdline()[0],
                "agent_python": acmd[0],
                "agent_uid": agent.uids().real,
                "agent_netns_is_hub": _netns(agent.pid) == _netns(hub_proc.pid),
                "token": "fd (--token-fd)" if "--token-fd" in acmd else "environment",
                "kernel_python": kernel_python,
                "kernel_rsparkhub": kernel_src,
                "kernel_uid": kernel_uid,
                "kernel_argv": [a for a in pykernel.cmdline()[1:] if not a.endswith(".json")],
                "processes": sorted(roles.values()),
            }
    finally:
        await _stop(side, wid)
    if not _same_env(seen["agent_python"], side.env.python):
        problems.append(f"the agent runs {seen['agent_python']}, not {side.env.python}")
    if not _same_env(seen["kernel_python"], side.env.python):
        problems.append(f"the Python kernel runs {seen['kernel_python']}, not {side.env.python}")
    if Path(seen["kernel_rsparkhub"]).resolve() != side.env.src.resolve():
        problems.append(f"the kernel imports rsparkhub from {seen['kernel_rsparkhub']}")
    isolated = side.name == "after"
    if (seen["agent_uid"] != 0) != isolated or (seen["kernel_uid"] != "0") != isolated:
        problems.append(f"agent uid {seen['agent_uid']}, kernel uid {seen['kernel_uid']}")
    if seen["agent_netns_is_hub"] == isolated:
        problems.append(
            "the agent's network namespace is " + ("" if isolated else "not ") + "the hub's"
        )
    if (seen["token"] == "environment") == isolated and not side.env.same_tree:
        problems.append(f"the agent got its token through the {seen['token']}")
    if isolated and "pasta" not in seen["processes"]:
        problems.append(f"no pasta among the session's processes {seen['processes']}")
    if problems:
        raise RuntimeError(
            f"the {side.name} hub does not run what it should: " + "; ".join(problems)
        )
    return seen


async def idle_memory(side: Side, wid: str, att: Attachment) -> dict[str, Any]:
    info = await side.c.request("GET", f"/api/workspaces/{wid}/session")
    outside = measure(session_processes(att.session_id))
    return {"api": info.get("memory_bytes"), **outside}


async def timed_exec(att: Attachment, lang: str) -> tuple[float, float]:
    t = time.perf_counter()
    res = await run_ok(att, "1", lang, timeout=STEP_TIMEOUT)
    assert res.done is not None
    return time.perf_counter() - t, res.done.duration_ms / 1000


def _order(i: int, sides: list[Side]) -> list[Side]:
    """before, after, after, before, …: a linear drift hits both sides alike."""
    return sides if i % 2 == 0 else sides[::-1]


# --------------------------------------------------------------------------- one repeat


async def one_repeat(
    before: Env, after: Env, n: int, exec_n: int, deadline: Deadline, loads: list[float]
) -> dict[str, Any]:
    """Two fresh hubs, every measurement; on failure the end of each hub's log is shown
    (the hubs' temp dirs are removed on the way out)."""
    with running_hub(before.hub_env, python=before.python) as hb, running_hub() as ha:
        sides = [Side("before", hb, before), Side("after", ha, after)]
        try:
            return await _measure(sides, n, exec_n, deadline, loads)
        except BaseException:
            for s in sides:
                with contextlib.suppress(OSError):
                    tail = s.hub.log_path.read_text(errors="replace")[-3000:]
                    print(f"--- end of the {s.name} hub's log:\n{tail}", file=sys.stderr)
            raise


async def _stop(side: Side, wid: str) -> None:
    """Stop a session; a failure is only reported (the hub's clean-up kills it anyway), so
    that it does not hide the error that got us here."""
    try:
        await side.c.stop_session(wid)
    except Exception as exc:  # noqa: BLE001
        print(f"stopping a session of the {side.name} hub: {exc}", file=sys.stderr)


async def _measure(
    sides: list[Side], n: int, exec_n: int, deadline: Deadline, loads: list[float]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        s: {"first": {lang: [] for lang in LANGS}, "exec": {}, "memory": None} for s in SIDES
    }
    async with AsyncExitStack() as stack:
        for s in sides:
            token = s.hub.make_user("bench")
            s.client = await stack.enter_async_context(HubClient(s.hub.url, token, timeout=120))
        # the probe also warms both hubs up (disk cache, imports, R packages)
        for s in sides:
            deadline.check(f"probe {s.name}")
            out[s.name]["probe"] = await probe(s)
        argvs = {s.name: out[s.name]["probe"]["kernel_argv"] for s in sides}
        if argvs["before"] != argvs["after"]:
            raise RuntimeError(f"the Python kernels start with different arguments: {argvs}")
        loads.append(os.getloadavg()[0])

        # 1. first result: one unmeasured run per side and language, then interleaved
        for lang in LANGS:
            for s in sides:
                await hub_once(s.c, lang)
        for i in range(n):
            for lang in LANGS:
                for s in _order(i, sides):
                    deadline.check(f"first result {s.name} {lang}")
                    out[s.name]["first"][lang].append(await hub_once(s.c, lang))
            loads.append(os.getloadavg()[0])

        # 2. idle memory, 3. exec latency: one warm session per side
        atts: dict[str, tuple[str, Attachment]] = {}
        try:
            for s in sides:
                wid = await new_workspace(s.c, f"warm-{s.name}")
                atts[s.name] = (wid, await stack.enter_async_context(s.c.attach(wid)))
                await run_ok(atts[s.name][1], "1", "r")
                await run_ok(atts[s.name][1], "1", "python")
            await asyncio.sleep(SETTLE_S)
            for s in sides:
                out[s.name]["memory"] = await idle_memory(s, *atts[s.name])
            for lang in LANGS:
                for s in sides:
                    for _ in range(WARMUP):
                        await run_ok(atts[s.name][1], "1", lang, timeout=STEP_TIMEOUT)
                    out[s.name]["exec"][lang] = {"rtt": [], "agent": []}
                for i in range(exec_n):
                    if i % 20 == 0:
                        deadline.check(f"exec {lang}")
                    for s in _order(i, sides):
                        rtt, agent = await timed_exec(atts[s.name][1], lang)
                        out[s.name]["exec"][lang]["rtt"].append(rtt)
                        out[s.name]["exec"][lang]["agent"].append(agent)
                loads.append(os.getloadavg()[0])
        finally:
            for s in sides:
                if s.name in atts:
                    await _stop(s, atts[s.name][0])
        for s in sides:
            assert s.hub.proc is not None
            out[s.name]["hub_rss"] = psutil.Process(s.hub.proc.pid).memory_info().rss
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    deadline = Deadline(args.budget)
    after = Env(sys.executable, ROOT / "src", "working tree")
    got = _imports_from(after.python)
    if got != after.src.resolve():
        raise RuntimeError(f"this venv imports rsparkhub from {got}, not {after.src}")
    loads = [os.getloadavg()[0]]
    data: dict[str, Any] = {
        "n": args.n,
        "exec_n": args.exec_n,
        "warmup": WARMUP,
        "repeats": [],
        "others_at_start": busiest_others(),
    }
    with contextlib.ExitStack() as stack:
        if args.baseline == "none":
            before = Env(sys.executable, after.src, "none", dict(NO_ISOLATION), same_tree=True)
        else:
            before = stack.enter_context(before_env(args.before))
        data["baseline"] = args.baseline
        data["before_commit"] = before.commit
        for r in range(args.repeat):
            deadline.check(f"repeat {r + 1}")
            rep = await one_repeat(before, after, args.n, args.exec_n, deadline, loads)
            data["repeats"].append(rep)
    data["load_1min"] = loads + [os.getloadavg()[0]]
    return data


def busiest_others(interval: float = 1.0, top: int = 4) -> list[tuple[str, float]]:
    """The processes (not this one) using the most CPU over ``interval``, by name."""
    me = os.getpid()
    procs = [p for p in psutil.process_iter(["name"]) if p.pid != me]
    for p in procs:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(interval)
    by_name: dict[str, float] = {}
    for p in procs:
        try:
            pct = p.cpu_percent(None)
        except psutil.Error:
            continue
        if pct > 0:
            by_name[p.info["name"]] = by_name.get(p.info["name"], 0.0) + pct
    return sorted(by_name.items(), key=lambda kv: -kv[1])[:top]


# --------------------------------------------------------------------------- report


def _metrics(rep: dict[str, Any] | list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per metric: {'before': samples, 'after': samples, 'kind': 's'|'bytes', 'goal': bool}
    over one repeat or several pooled."""
    reps = rep if isinstance(rep, list) else [rep]
    m: dict[str, dict[str, Any]] = {}

    def add(key: str, kind: str, goal: bool, get: Any) -> None:
        m[key] = {"kind": kind, "goal": goal}
        for s in SIDES:
            m[key][s] = [x for r in reps for x in get(r[s])]

    names = {"python": "Python", "r": "R"}
    for lang in LANGS:
        add(f"first result of `1+1`, {names[lang]}", "s", True,
            lambda d, lang=lang: [x["first_result"] for x in d["first"][lang]])  # fmt: skip
    for lang in LANGS:
        add(f"… of which: agent up (kernel 'starting'), {names[lang]}", "s", False,
            lambda d, lang=lang: [x["kernel_starting"] for x in d["first"][lang] if "kernel_starting" in x])  # fmt: skip
    add("stop session (DELETE …/session)", "s", False,
        lambda d: [x["stop"] for lang in LANGS for x in d["first"][lang]])  # fmt: skip
    add("idle session (R + Python): hub's memory_bytes", "bytes", True,
        lambda d: [d["memory"]["api"]] if d["memory"]["api"] is not None else [])  # fmt: skip
    add("idle session (R + Python): RSS sum (psutil)", "bytes", True,
        lambda d: [d["memory"]["rss"]])  # fmt: skip
    add("idle session (R + Python): PSS sum (psutil)", "bytes", False,
        lambda d: [d["memory"]["pss"]])  # fmt: skip
    for lang in LANGS:
        add(f"execute `1`, {names[lang]}: median", "s", True,
            lambda d, lang=lang: d["exec"][lang]["rtt"])  # fmt: skip
        m[f"execute `1`, {names[lang]}: median"]["stat"] = "median"
        add(f"execute `1`, {names[lang]}: p90", "s", False,
            lambda d, lang=lang: d["exec"][lang]["rtt"])  # fmt: skip
        m[f"execute `1`, {names[lang]}: p90"]["stat"] = "p90"
        add(f"… agent's duration_ms, {names[lang]}: median", "s", False,
            lambda d, lang=lang: d["exec"][lang]["agent"])  # fmt: skip
        add(f"… round trip minus agent's duration_ms, {names[lang]}: median", "s", False,
            lambda d, lang=lang: [r - a for r, a in zip(d["exec"][lang]["rtt"], d["exec"][lang]["agent"], strict=True)])  # fmt: skip
    add("hub process RSS after the run", "bytes", False, lambda d: [d["hub_rss"]])
    return m


def _stat(xs: list[float], which: str = "median") -> float | None:
    return stats(xs)[which] if xs else None


def _fmt(v: float | None, kind: str) -> str:
    if v is None:
        return "?"
    return fmt_ms(v) if kind == "s" else mib(v)


def _range(xs: list[float], kind: str) -> str:
    if len(xs) < 2:
        return ""
    return f" ({_fmt(min(xs), kind)}–{_fmt(max(xs), kind)})"


def goals(data: dict[str, Any]) -> list[str]:
    lines = []
    for key, m in _metrics(data["repeats"]).items():
        if not m["goal"]:
            continue
        b, a = (
            _stat(m["before"], m.get("stat", "median")),
            _stat(m["after"], m.get("stat", "median")),
        )
        if not a or not b:
            continue
        ratio = a / b
        verdict = "meets" if ratio <= GOAL else "**misses**"
        lines.append(
            f"- isolation cost, {key}: after/before = {ratio:.2f}× ({_fmt(b, m['kind'])} → "
            f"{_fmt(a, m['kind'])}) — {verdict} the goal ≤ {GOAL:.2f}×"
        )
    return lines


def _short_argv(argv: list[str]) -> str:
    return " ".join(f"<{a.count(chr(10)) + 1}-line program>" if "\n" in a else a for a in argv)


def report(data: dict[str, Any]) -> str:
    reps = data["repeats"]
    pooled = _metrics(reps)
    rows = []
    for key, m in pooled.items():
        which = m.get("stat", "median")
        b, a = _stat(m["before"], which), _stat(m["after"], which)
        show_range = which == "median" and m["kind"] == "s" and "first result" in key
        ratio = f"{a / b:.2f}×" if a and b else "?"
        rows.append(
            [
                key,
                _fmt(b, m["kind"]) + (_range(m["before"], m["kind"]) if show_range else ""),
                _fmt(a, m["kind"]) + (_range(m["after"], m["kind"]) if show_range else ""),
                ratio,
                ("yes" if a / b <= GOAL else "**NO**") if (m["goal"] and a and b) else "",
            ]
        )
    n_first = len(pooled[next(iter(pooled))]["before"])
    before = (
        "this working tree with `sandbox = 'none'` and `session_disk_mb = 0` (no isolation)"
        if data.get("baseline") == "none"
        else f"commit {data['before_commit']} (no isolation)"
    )
    text = (
        f"Before = {before}, after = the working tree as configured by default. "
        f"{len(reps)} repeat(s) on fresh hubs, pooled: {n_first} first results per language "
        f"and side, one idle session per side and repeat, {data['exec_n']} executions per "
        f"language and side (after {data['warmup']} warm-up) per repeat; the two hubs' runs "
        "interleaved one by one. Medians (first result: min–max).\n\n"
        + table(["metric", "before", "after", "after/before", f"≤ {GOAL:.2f}×?"], rows)
    )

    # the spread between repeats
    if len(reps) > 1:
        per = [_metrics(r) for r in reps]
        srows = []
        for key, m in pooled.items():
            which = m.get("stat", "median")
            got = {s: [_stat(p[key][s], which) for p in per] for s in SIDES}
            vals = {s: [v for v in got[s] if v is not None] for s in SIDES}
            if any(len(vals[s]) != len(per) for s in SIDES):
                continue
            ratios = [a / b for a, b in zip(vals["after"], vals["before"], strict=True)]

            def spread(xs: list[float]) -> str:
                return f"{100 * (max(xs) - min(xs)) / statistics.fmean(xs):.0f} %"

            srows.append(
                [
                    key,
                    " / ".join(_fmt(v, m["kind"]) for v in vals["before"]),
                    " / ".join(_fmt(v, m["kind"]) for v in vals["after"]),
                    " / ".join(f"{r:.2f}×" for r in ratios),
                    spread(vals["before"]),
                    spread(vals["after"]),
                    f"{max(ratios) - min(ratios):.2f}",
                ]
            )
        text += (
            "\n\nSpread between the repeats (each repeat's median; spread = (max − min) / mean)"
            "\n\n"
            + table(
                [
                    "metric",
                    "before per repeat",
                    "after per repeat",
                    "ratio per repeat",
                    "before spread",
                    "after spread",
                    "ratio spread",
                ],
                srows,
            )  # fmt: skip
        )

    # where the session's memory is
    by_role: dict[str, dict[str, list[int]]] = {s: {} for s in SIDES}
    for r in reps:
        for s in SIDES:
            acc: dict[str, int] = {}
            for p in r[s]["memory"]["parts"]:
                acc[p["name"]] = acc.get(p["name"], 0) + p["rss"]
            for name, rss in acc.items():
                by_role[s].setdefault(name, []).append(rss)
    roles = sorted(
        set(by_role["before"]) | set(by_role["after"]),
        key=lambda n: -max(statistics.median(by_role[s].get(n, [0])) for s in SIDES),
    )
    mrows = [
        [
            role,
            *(
                mib(statistics.median(by_role[s][role])) if role in by_role[s] else "—"
                for s in SIDES
            ),
        ]
        for role in roles
    ]
    text += (
        "\n\nThe idle session's processes (RSS, summed by kind, median over repeats)\n\n"
        + table(["process", "before", "after"], mrows)
    )

    # what each hub was checked to run
    pr = {s: reps[0][s]["probe"] for s in SIDES}
    checks = [
        ["hub, agent and Python kernel interpreter", *(pr[s]["agent_python"] for s in SIDES)],
        ["rsparkhub imported by the Python kernel from", *(pr[s]["kernel_rsparkhub"] for s in SIDES)],
        ["agent's uid / kernel's uid", *(f"{pr[s]['agent_uid']} / {pr[s]['kernel_uid']}" for s in SIDES)],
        ["agent in the hub's network namespace", *("yes" if pr[s]["agent_netns_is_hub"] else "no" for s in SIDES)],
        ["agent's token through", *(pr[s]["token"] for s in SIDES)],
        ["session processes", *(", ".join(pr[s]["processes"]) for s in SIDES)],
        ["Python kernel arguments", *(_short_argv(pr[s]["kernel_argv"]) for s in SIDES)],
    ]  # fmt: skip
    text += (
        "\n\nWhat the probe session found on each hub (the run stops if it is not this)\n\n"
        + table(["check", "before", "after"], checks)
    )
    loads = data.get("load_1min") or []
    others = ", ".join(f"{n} {pct:.0f} %" for n, pct in data.get("others_at_start", []))
    if loads:
        text += (
            f"\n\nLoad average (1 min) sampled during the run: {min(loads):.2f}–{max(loads):.2f} on "
            f"{psutil.cpu_count()} cores (this benchmark itself keeps about one core busy)"
            + (f"; busiest other processes at the start (CPU over 1 s): {others}" if others else "")
            + "."
        )
    return text


# --------------------------------------------------------------------------- main


def _record(text: str, run: dict[str, Any], note: str) -> None:
    body = text + (f"\n\n**Note.** {note}" if note else "")
    record_section(TITLE, "bench/isolation.py", body, run["facts"], run["wall_s"],
                   tuple(run["load"]))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5, help="first results per language and side")
    ap.add_argument("--exec-n", type=int, default=200, help="executions per language and side")
    ap.add_argument("--repeat", type=int, default=2, help="whole runs, fresh hubs each")
    ap.add_argument("--baseline", choices=("none", "commit"), default="none",
                    help="none: this tree without isolation; commit: --before")  # fmt: skip
    ap.add_argument("--before", default=BEFORE, help="the commit before isolation")
    ap.add_argument("--quick", action="store_true", help="--n 2 --exec-n 40 --repeat 1")
    ap.add_argument("--budget", type=float, default=1800, help="seconds")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--record", action="store_true", help="write the section of RESULTS.md")
    ap.add_argument("--note", default="", help="a sentence added to the recorded section")
    ap.add_argument("--from-json", type=Path, help="no run: report (and record) a --json run")
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        text = report(saved["data"])
        print(text)
        if args.record:
            _record(text, saved["run"], args.note)
        return
    if args.quick:
        args.n, args.exec_n, args.repeat = 2, 40, 1
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t = time.monotonic()
    data = asyncio.run(main_async(args))
    wall = time.monotonic() - t
    load1 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = report(data)
    print(text)
    facts = machine_facts()
    facts["before"] = (
        "working tree, sandbox = 'none', session_disk_mb = 0"
        if args.baseline == "none"
        else f"{data['before_commit']} (worktree, its own venv)"
    )
    facts["after"] = "working tree" + (
        " (uncommitted changes)" if _git("status", "--porcelain", "--", "src") else ""
    )
    facts["pasta"] = shutil.which("pasta") or "not installed"
    facts["mode"] = "quick" if args.quick else f"n={args.n}, exec-n={args.exec_n}, repeat={args.repeat}"  # fmt: skip
    run = {"facts": facts, "wall_s": wall, "load": [load0, load1]}
    if args.json:
        args.json.write_text(
            json.dumps({"data": data, "report": text, "goals": goals(data), "run": run}, indent=1)
        )
    if args.record:
        _record(text, run, args.note)


if __name__ == "__main__":
    main()
