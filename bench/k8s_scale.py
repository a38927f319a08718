"""The hub with the Kubernetes spawner managing 1,000 session pods, against the stand-in
API server (tests/k8s_standin.py — a test double, because no Kubernetes cluster runs here).

What runs: a real hub (``rsparkhub serve``, SQLite, ``spawner = kubernetes``) whose
kubeconfig points at the stand-in, which runs in this process and plays scheduler and
kubelet for every pod (scheduled → image pulled → running, with events). The pods run no
agent — 1,000 agents with kernels do not fit this machine — so this script connects one
*socket-only agent* per pod to the hub's ``/agent/ws`` with the pod's token (read from its
Secret): ``hello``, ``welcome``, then idle, re-dialling when the hub goes away. The hub
therefore holds 1,000 running sessions with their agent sockets, event logs and monitors,
and the spawner's one pod watch, one event watch and its cache — everything but kernels.

Measured, at N sessions (default 100, then 1,000):

* start: POSTs per second, time until every pod runs and every session is ``running``;
* steady state (``--window`` seconds): hub RSS and CPU, and the API requests the hub makes
  per minute by verb, counted by the API server — the same at 100 and 1,000 sessions when
  there is no per-session polling;
* restart (graceful, plus 50 orphaned pods left by "a crash"): time until the new hub
  answers (adoption done: one list, every session re-attached), until every session is
  ``running`` again (agents re-dialled), until the orphans are deleted; API requests made.

Usage: .venv/bin/python bench/k8s_scale.py [--sizes 100,1000] [--window 60] [--orphans 50]
       [--quick] [--json OUT] [--record]   (--record writes its section of bench/RESULTS.md)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import _hub  # noqa: E402
import httpx  # noqa: E402
import psutil  # noqa: E402
import websockets  # noqa: E402
from _hub import HubProcess, P, machine_facts, mib, record_section, table  # noqa: E402
from k8s_standin import StandIn  # noqa: E402

from rsparkhub.hub.spawners.base import SessionSpec  # noqa: E402
from rsparkhub.hub.spawners.k8s_objects import (  # noqa: E402
    PodConfig,
    build_session_pod,
    build_session_secret,
)
from rsparkhub.hub.spawners.k8s_profiles import KubernetesProfile  # noqa: E402

TITLE = "8. Kubernetes spawner at 1,000 pods (`bench/k8s_scale.py`)"
NS = "rsparkhub-scale"
USERS = 10
CONCURRENCY = 16


class Fleet:
    """Socket-only agents, one per session: hello → welcome → idle; re-dial on close."""

    def __init__(self, port: int, standin: StandIn, deadline: float) -> None:
        self.url = f"ws://127.0.0.1:{port}/agent/ws"
        self.standin = standin
        self.deadline = deadline
        self.connected: dict[str, bool] = {}
        self.dials = 0
        self.tasks: list[asyncio.Task[None]] = []

    def add(self, session_id: str) -> None:
        secret = self.standin.get("secrets", NS, f"rsparkhub-session-{session_id}")
        assert secret is not None, session_id
        token = base64.b64decode(secret["data"]["token"]).decode()
        self.connected[session_id] = False
        self.tasks.append(asyncio.create_task(self._run(session_id, token)))

    async def _run(self, sid: str, token: str) -> None:
        resumed = False
        while time.monotonic() < self.deadline:
            try:
                self.dials += 1
                async with websockets.connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {token}"},
                    open_timeout=60,
                    ping_interval=None,
                ) as ws:
                    hello = P.AgentHello(
                        session_id=sid, languages=["python"], first_unacked_seq=1, resumed=resumed
                    )
                    await ws.send(P.dump(hello))
                    while json.loads(await ws.recv()).get("type") != "welcome":
                        pass
                    resumed = True
                    self.connected[sid] = True
                    async for raw in ws:
                        if json.loads(raw).get("type") == "stop":
                            return
            except (OSError, websockets.exceptions.WebSocketException, TimeoutError):
                pass
            self.connected[sid] = False
            await asyncio.sleep(0.5)

    def up(self) -> int:
        return sum(self.connected.values())

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def until(what: str, predicate: Any, timeout: float, every: float = 0.2) -> float:
    """Seconds until ``await predicate()`` is true (bounded)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if await predicate():
            return time.monotonic() - t0
        await asyncio.sleep(every)
    raise TimeoutError(f"{what}: not reached in {timeout:.0f} s")


def calls_of(standin: StandIn) -> Counter[str]:
    with standin.lock:
        return Counter({f"{verb} {res}": n for (verb, res), n in standin.calls.items()})


def diff(after: Counter[str], before: Counter[str]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in sorted(after) if after[k] - before.get(k, 0)}


async def running_sessions(admin: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await admin.get("/api/sessions")
    r.raise_for_status()
    return [s for s in r.json() if s["state"] == "running"]


async def steady(hub: HubProcess, standin: StandIn, window: float) -> dict[str, Any]:
    """Hub RSS/CPU and API requests per minute over ``window`` seconds of idling."""
    assert hub.proc is not None
    proc = psutil.Process(hub.proc.pid)
    c0, cpu0, t0 = calls_of(standin), proc.cpu_times(), time.monotonic()
    rss: list[int] = []
    while time.monotonic() - t0 < window:
        rss.append(proc.memory_info().rss)
        await asyncio.sleep(1.0)
    c1, cpu1, t1 = calls_of(standin), proc.cpu_times(), time.monotonic()
    minutes = (t1 - t0) / 60
    per_verb = {k: v / minutes for k, v in diff(c1, c0).items()}
    return {
        "window_s": t1 - t0,
        "rss_max": max(rss),
        "rss_last": rss[-1],
        "cpu_pct": 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (t1 - t0),
        "calls_per_min": per_verb,
        "calls_per_min_total": sum(per_verb.values()),
        "threads": proc.num_threads(),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    budget_end = time.monotonic() + args.budget
    tmp = Path(tempfile.mkdtemp(prefix="rsparkhub-k8s-bench-"))
    standin = StandIn(step_s=0.05, validate=None, history=50_000, bookmark_s=5.0).start()
    standin.set_scenario("run")
    hub = HubProcess(
        tmp / "data",
        {
            "RSPARKHUB_SPAWNER": "kubernetes",
            "RSPARKHUB_KUBERNETES_CREDENTIALS": "kubeconfig",
            "KUBECONFIG": str(standin.kubeconfig(tmp / "kubeconfig", NS)),
            "RSPARKHUB_KUBERNETES_NAMESPACE": NS,
            "RSPARKHUB_KUBERNETES_IMAGE": "registry.example/rsparkhub/session:bench",
            "RSPARKHUB_KUBERNETES_START_TIMEOUT_S": "86400",
            "RSPARKHUB_IDLE_TIMEOUT_S": "0",
            "RSPARKHUB_SESSION_LANGUAGES": "python",
            "RSPARKHUB_EVENT_FSYNC": "false",
        },
    )
    hub.env["RSPARKHUB_KUBERNETES_HUB_URL"] = f"ws://127.0.0.1:{hub.port}/agent/ws"
    _hub._LIVE.append((hub, tmp))  # killed at exit whatever happens
    fleet: Fleet | None = None
    out: dict[str, Any] = {"sizes": [], "notes": []}
    try:
        t0 = time.monotonic()
        hub.start()
        out["empty_start_s"] = time.monotonic() - t0
        tokens = [hub.make_user(f"user{i}") for i in range(USERS)]
        admin_token = hub.make_user("boss", admin=True)
        n_max = max(args.sizes)
        clients = [
            httpx.AsyncClient(
                base_url=hub.url, headers={"Authorization": f"Bearer {t}"}, timeout=120
            )
            for t in tokens
        ]
        admin = httpx.AsyncClient(
            base_url=hub.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=120
        )
        # Workspaces: n_max spread over the users.
        t0 = time.monotonic()
        workspaces: list[tuple[int, str]] = []
        for i, c in enumerate(clients):
            pid = (await c.post("/api/projects", json={"name": "scale"})).json()["id"]
            make_sem = asyncio.Semaphore(CONCURRENCY)

            async def make(
                j: int,
                c: httpx.AsyncClient = c,
                pid: str = pid,
                sem: asyncio.Semaphore = make_sem,
            ) -> str:
                async with sem:
                    r = await c.post(f"/api/projects/{pid}/workspaces", json={"name": f"w{j:04d}"})
                    r.raise_for_status()
                    return str(r.json()["id"])

            count = n_max // USERS + (1 if i < n_max % USERS else 0)
            for wid in await asyncio.gather(*(make(j) for j in range(count))):
                workspaces.append((i, wid))
        print(f"{len(workspaces)} workspaces in {time.monotonic() - t0:.1f} s", flush=True)
        fleet = Fleet(hub.port, standin, budget_end)
        started = 0
        for n in sorted(args.sizes):
            # ---- start sessions up to n
            start_sem = asyncio.Semaphore(CONCURRENCY)

            async def start(i: int, wid: str, sem: asyncio.Semaphore = start_sem) -> str:
                async with sem:
                    r = await clients[i].post(f"/api/workspaces/{wid}/session")
                    r.raise_for_status()
                    return str(r.json()["id"])

            t0 = time.monotonic()
            sids = await asyncio.gather(*(start(i, w) for i, w in workspaces[started:n]))
            t_post = time.monotonic() - t0

            async def all_pods_running(n: int = n) -> bool:
                return sum(p["status"]["phase"] == "Running" for p in standin.list("pods", NS)) >= n

            t_pods = time.monotonic() - t0 + await until("pods running", all_pods_running, 600)
            for sid in sids:
                fleet.add(sid)

            async def all_sessions_running(n: int = n) -> bool:
                return len(await running_sessions(admin)) >= n

            await until("sessions running", all_sessions_running, 600, every=1.0)
            t_all = time.monotonic() - t0
            started = n
            print(
                f"{n} sessions: POSTs {t_post:.1f} s, running after {time.monotonic() - t0:.1f} s",
                flush=True,
            )
            await asyncio.sleep(5)  # let the start burst settle
            s = await steady(hub, standin, args.window)
            print(
                f"  steady: RSS {mib(s['rss_last'])}, CPU {s['cpu_pct']:.1f} %, {s['calls_per_min_total']:.1f} API calls/min",
                flush=True,
            )
            out["sizes"].append(
                {
                    "n": n,
                    "new": len(sids),
                    "post_s": t_post,
                    "pods_running_s": t_pods,
                    "sessions_running_s": t_all,
                    **s,
                }
            )
        # ---- restart with orphans
        n = started
        orphans = []
        for _ in range(args.orphans):
            spec = SessionSpec(
                session_id=uuid.uuid4().hex,
                workspace_id="orphan",
                user="ghost",
                token="rsa_x",
                hub_agent_url="x",
                session_dir=Path("/x"),
                log_path=Path("/x/log"),
            )
            cfg = PodConfig(namespace=NS, image="registry.example/x:1", hub_url="ws://x/agent/ws")
            standin.create("secrets", NS, build_session_secret(spec, NS))
            pod = build_session_pod(spec, KubernetesProfile(name="default"), cfg)
            standin.create("pods", NS, pod)
            orphans.append(pod["metadata"]["name"])

        async def orphans_running() -> bool:
            return all(
                (standin.get("pods", NS, o) or {}).get("status", {}).get("phase") == "Running"
                for o in orphans
            )

        await until("orphans running", orphans_running, 60)
        c0 = calls_of(standin)
        hub.stop()
        t0 = time.monotonic()
        await asyncio.to_thread(hub.start)  # returns once /api/health answers: adoption done
        t_ready = time.monotonic() - t0
        c_ready = calls_of(standin)

        async def everyone_back() -> bool:
            return len(await running_sessions(admin)) >= n and fleet is not None and fleet.up() >= n

        t_back = await until("sessions running again", everyone_back, 600, every=0.5)

        async def orphans_gone() -> bool:
            return not any(standin.get("pods", NS, o) for o in orphans)

        t_orphans = await until("orphans deleted", orphans_gone, 120)
        c_back = calls_of(standin)
        await asyncio.sleep(5)
        after = await steady(hub, standin, max(20.0, args.window / 2))
        out["restart"] = {
            "n": n,
            "orphans": len(orphans),
            "ready_s": t_ready,
            "all_running_s": t_ready + t_back,
            "orphans_deleted_s": t_ready + t_orphans,
            "calls_until_ready": diff(c_ready, c0),
            "calls_until_running": diff(c_back, c0),
            "after": after,
        }
        out["standin_gets"] = standin.count("get", "pods")
        out["dials"] = fleet.dials
        for c in (*clients, admin):
            await c.aclose()
        return out
    except BaseException:
        try:  # the hub's side of the story
            print(hub.log_path.read_text()[-4000:], file=sys.stderr)
        except OSError:
            pass
        raise
    finally:
        if fleet is not None:
            await fleet.close()
        try:
            hub.stop()
        finally:
            if (hub, tmp) in _hub._LIVE:
                _hub._LIVE.remove((hub, tmp))
            _hub._kill_tree_of(hub.data_dir)
            standin.close()
            shutil.rmtree(tmp, ignore_errors=True)


def _calls(per: dict[str, float] | dict[str, int]) -> str:
    return (
        ", ".join(
            f"{k} {v}" if isinstance(v, int) else f"{k} {v:.1f}" for k, v in sorted(per.items())
        )
        or "none"
    )


def report(data: dict[str, Any]) -> str:
    rows = []
    for s in data["sizes"]:
        rows.append(
            [
                s["n"],
                f"{s['new'] / s['post_s']:.0f}/s",
                f"{s['pods_running_s']:.1f} s",
                f"{s['sessions_running_s']:.1f} s",
                mib(s["rss_last"]),
                f"{s['cpu_pct']:.1f} %",
                f"{s['calls_per_min_total']:.1f}",
                _calls(s["calls_per_min"]),
                s["threads"],
            ]
        )
    parts = [
        "A real hub (`rsparkhub serve`, SQLite, `spawner = kubernetes`) against the stand-in "
        "API server of tests/k8s_standin.py (in the benchmark's process: scheduler and "
        "kubelet for every pod, with events; no cluster runs here). The pods run no agent; "
        "one socket-only agent per pod connects to the hub with the pod's token (hello, "
        "welcome, idle; re-dials after a restart), so the hub holds N running sessions with "
        "their agent sockets, event logs and monitors — everything but kernels. Sessions "
        f"spread over {USERS} users; {CONCURRENCY} concurrent starts.",
        "",
        "Start and steady state (steady state: the hub idles with every session running and "
        "its agent socket open; CPU is % of one core; API calls counted by the API server):",
        "",
        table(
            [
                "sessions",
                "start rate (POST)",
                "all pods running",
                "all sessions running",
                "hub RSS",
                "hub CPU",
                "API calls/min",
                "by verb (per min)",
                "hub threads",
            ],
            rows,
        ),
    ]
    r = data.get("restart")
    if r:
        a = r["after"]
        parts += [
            "",
            f"Graceful hub restart with {r['n']} running sessions and {r['orphans']} orphaned "
            "pods (pods with the session label whose session the hub never knew):",
            "",
            table(
                ["measure", "value"],
                [
                    [
                        "hub start with no sessions (for comparison)",
                        f"{data['empty_start_s']:.1f} s",
                    ],
                    [
                        "new hub answering (every session adopted, orphans' deletion requested)",
                        f"{r['ready_s']:.1f} s",
                    ],
                    [
                        "every session running again (agents re-dialled)",
                        f"{r['all_running_s']:.1f} s",
                    ],
                    ["every orphan pod gone", f"{r['orphans_deleted_s']:.1f} s"],
                    [
                        "API calls until answering",
                        _calls(r["calls_until_ready"]),
                    ],
                    [
                        "API calls until all running",
                        _calls(r["calls_until_running"]),
                    ],
                    ["hub RSS after adoption (steady)", mib(a["rss_last"])],
                    ["hub CPU after adoption (steady)", f"{a['cpu_pct']:.1f} %"],
                    [
                        "API calls/min after adoption",
                        f"{a['calls_per_min_total']:.1f} ({_calls(a['calls_per_min'])})",
                    ],
                ],
            ),
        ]
    sizes = data["sizes"]
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        parts += [
            "",
            f"No per-session polling: {lo['calls_per_min_total']:.1f} API calls/min at "
            f"{lo['n']} sessions, {hi['calls_per_min_total']:.1f} at {hi['n']} (the metrics "
            "list every 30 s and watch renewals); GET of a single pod during the whole run: "
            f"{data['standin_gets']}. Hub RSS grows {mib(hi['rss_last'] - lo['rss_last'])} "
            f"from {lo['n']} to {hi['n']} sessions "
            f"({(hi['rss_last'] - lo['rss_last']) / max(1, hi['n'] - lo['n']) / 1024:.0f} KiB "
            "per session: session state, event log, agent socket, pod cache entry).",
        ]
    return "\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000", help="session counts, ascending")
    ap.add_argument("--window", type=float, default=60, help="steady-state seconds per size")
    ap.add_argument("--orphans", type=int, default=50)
    ap.add_argument("--budget", type=float, default=1500, help="seconds")
    ap.add_argument("--quick", action="store_true", help="100 then 200 sessions, 15 s windows")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--record", action="store_true", help="write the section of RESULTS.md")
    ap.add_argument(
        "--from-json", type=Path, help="no run: report (and with --record, record) a --json run"
    )
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        text = report(saved["data"])
        print(text)
        if args.record:
            run = saved["run"]
            record_section(
                TITLE, "bench/k8s_scale.py", text, saved["facts"], run["wall_s"], tuple(run["load"])
            )
        return
    args.sizes = [int(x) for x in str(args.sizes).split(",")]
    if args.quick:
        args.sizes, args.window, args.orphans = [100, 200], 15.0, 10
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t = time.monotonic()
    data = asyncio.run(main_async(args))
    wall = time.monotonic() - t
    load1 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = report(data)
    print(text)
    facts = machine_facts()
    facts["mode"] = "quick" if args.quick else "full"
    if args.json:
        run = {"wall_s": wall, "load": [load0, load1]}
        saved = {"data": data, "report": text, "facts": facts, "run": run}
        args.json.write_text(json.dumps(saved, indent=1))
    if args.record:
        record_section(TITLE, "bench/k8s_scale.py", text, facts, wall, (load0, load1))


if __name__ == "__main__":
    main()
