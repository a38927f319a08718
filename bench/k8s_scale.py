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

``--cluster lab``: the same against the real control plane of scripts/k8s-lab.sh (etcd,
kube-apiserver, controller-manager, scheduler, all Kubernetes 1.20) with kubemark hollow
nodes (``scripts/k8s-lab.sh hollow N``: kubelets whose fake runtime takes pods to Running
with no container). The hub talks to the API server as the ``rsparkhub-hub``
ServiceAccount with the Role of deploy/kustomize (a TokenRequest token, as
tests/test_k8s_cluster.py does); its one profile selects and tolerates the hollow nodes
(label and NoSchedule taint ``rsparkhub.dev/hollow=true``) and requests 5m CPU / 16Mi
(a hollow node has 1 CPU, 3.75 GiB and at most 110 pods). API requests come from the API
server's own ``apiserver_request_total`` (/metrics), which has no user or user-agent
label in 1.20: the hub's share is the delta between a window with the hub running and a
window of the same length with the hub stopped (same pods, same hollow nodes), per
verb and resource. The hub restarts at every size (that window is its downtime), with
the orphans at the last. Default sizes 200,1000; the section is §8b of RESULTS.md, with
the stand-in's figures of §8 side by side.

Usage: .venv/bin/python bench/k8s_scale.py [--cluster standin|lab] [--sizes 100,1000]
       [--window 60] [--orphans 50] [--quick] [--json OUT] [--record]
       (--record writes its section of bench/RESULTS.md)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import re
import shutil
import statistics
import subprocess
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
    SESSION_SELECTOR,
    PodConfig,
    build_session_pod,
    build_session_secret,
)
from rsparkhub.hub.spawners.k8s_profiles import KubernetesProfile  # noqa: E402

TITLE = "8. Kubernetes spawner at 1,000 pods (`bench/k8s_scale.py`)"
TITLE_LAB = (
    "8b. Kubernetes spawner on the real control plane with hollow nodes "
    "(`bench/k8s_scale.py --cluster lab`)"
)
NS = "rsparkhub-scale"
USERS = 10
CONCURRENCY = 16
ROOT = Path(__file__).resolve().parent.parent
LAB = Path(os.environ.get("RSPARKHUB_K8S_LAB", "/opt/k8s-lab"))
HOLLOW_KEY = "rsparkhub.dev/hollow"  # scripts/k8s-lab.sh hollow: label and taint
HOLLOW_PODS = 110  # kubemark 1.20's maxPods (a constant)
HUB_SA, SESSION_SA = "rsparkhub-hub", "rsparkhub-session"
# The bench's one profile on the lab: only hollow nodes, requests that fit 110 per node.
HOLLOW_PROFILE = {
    "name": "hollow",
    "default": True,
    "cpu_request": "5m",
    "memory_request": "16Mi",
    "node_selector": {HOLLOW_KEY: "true"},
    "tolerations": [
        {"key": HOLLOW_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ],
}


def hub_role() -> set[str]:
    """``verb resource[.group]`` for every verb the hub's Role (deploy/kustomize) grants:
    only these requests can be the hub's in the API server's counters."""
    import yaml

    text = (ROOT / "deploy" / "kustomize" / "base" / "rbac.yaml").read_text()
    out = set()
    for obj in yaml.safe_load_all(text):
        if obj and obj["kind"] == "Role" and obj["metadata"]["name"] == HUB_SA:
            for rule in obj["rules"]:
                for g in rule.get("apiGroups") or [""]:
                    for res in rule["resources"]:
                        for verb in rule["verbs"]:
                            out.add(f"{verb} {res}" + (f".{g}" if g else ""))
    return out


class StandInBackend:
    """The stand-in API server (tests/k8s_standin.py) in this process."""

    name = "standin"

    def __init__(self) -> None:
        self.standin = StandIn(step_s=0.05, validate=None, history=50_000, bookmark_s=5.0).start()
        self.standin.set_scenario("run")
        self.profile = KubernetesProfile(name="default")

    def hub_env(self, tmp: Path) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.standin.kubeconfig(tmp / "kubeconfig", NS)),
            "RSPARKHUB_KUBERNETES_IMAGE": "registry.example/rsparkhub/session:bench",
        }

    async def tokens(self, sids: list[str]) -> dict[str, str]:
        out = {}
        for sid in sids:
            secret = self.standin.get("secrets", NS, f"rsparkhub-session-{sid}")
            assert secret is not None, sid
            out[sid] = base64.b64decode(secret["data"]["token"]).decode()
        return out

    async def running_pods(self) -> int:
        return sum(p["status"]["phase"] == "Running" for p in self.standin.list("pods", NS))

    async def create(self, secret: dict[str, Any], pod: dict[str, Any]) -> None:
        self.standin.create("secrets", NS, secret)
        self.standin.create("pods", NS, pod)

    async def phases(self) -> dict[str, str]:
        return {
            p["metadata"]["name"]: p.get("status", {}).get("phase", "")
            for p in self.standin.list("pods", NS)
        }

    async def calls(self) -> Counter[str]:
        return calls_of(self.standin)

    async def watchers(self) -> Counter[str]:
        return Counter()

    def single_gets(self) -> int:
        return int(self.standin.count("get", "pods"))

    async def cleanup(self) -> None:
        pass

    def close(self) -> None:
        self.standin.close()


class LabBackend:
    """The real control plane of scripts/k8s-lab.sh, as its admin (set-up, checks, the
    apiserver's /metrics); the hub gets its own ServiceAccount's token."""

    name = "lab"

    def __init__(self, n_max: int) -> None:
        import yaml
        from kubernetes import client as k8s
        from kubernetes import config as k8s_config

        self.admin_kubeconfig = LAB / "lab" / "admin.kubeconfig"
        if not self.admin_kubeconfig.exists():
            raise SystemExit("no lab: scripts/k8s-lab.sh up (then hollow N)")
        cfg = k8s.Configuration()
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.admin_kubeconfig), client_configuration=cfg
        )
        self.api = k8s.ApiClient(cfg)
        self.core = k8s.CoreV1Api(self.api)
        self.rbac = k8s.RbacAuthorizationV1Api(self.api)
        doc = yaml.safe_load(self.admin_kubeconfig.read_text())
        self.server = doc["clusters"][0]["cluster"]["server"]
        self.ca = doc["clusters"][0]["cluster"]["certificate-authority"]
        self.admin_token = doc["users"][0]["user"]["token"]
        self.profile = KubernetesProfile(**HOLLOW_PROFILE)
        self.hollow_nodes = self._hollow_nodes(n_max)
        self._namespace()
        self.role = hub_role()

    def _ready_hollow(self) -> list[str]:
        nodes = self.core.list_node(label_selector=f"{HOLLOW_KEY}=true").items
        return [
            n.metadata.name
            for n in nodes
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or ())
        ]

    def _hollow_nodes(self, n_max: int) -> int:
        need = math.ceil(n_max * 1.1 / HOLLOW_PODS)  # + room for the orphans
        have = len(self._ready_hollow())
        if have < need:
            print(f"{have} hollow nodes ready, {need} needed: scripts/k8s-lab.sh hollow {need}")
            subprocess.run(
                [str(ROOT / "scripts" / "k8s-lab.sh"), "hollow", str(need)], check=True, timeout=600
            )
            have = len(self._ready_hollow())
        return have

    def _namespace(self) -> None:
        import yaml
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.read_namespace(NS)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.core.create_namespace(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
            )
        calls = {
            "ServiceAccount": (
                self.core.create_namespaced_service_account,
                self.core.replace_namespaced_service_account,
            ),
            "Role": (self.rbac.create_namespaced_role, self.rbac.replace_namespaced_role),
            "RoleBinding": (
                self.rbac.create_namespaced_role_binding,
                self.rbac.replace_namespaced_role_binding,
            ),
        }
        text = (ROOT / "deploy" / "kustomize" / "base" / "rbac.yaml").read_text()
        wanted = {
            ("ServiceAccount", HUB_SA),
            ("ServiceAccount", SESSION_SA),
            ("Role", HUB_SA),
            ("RoleBinding", HUB_SA),
        }
        for obj in yaml.safe_load_all(text):
            if not obj or (obj["kind"], obj["metadata"]["name"]) not in wanted:
                continue
            obj["metadata"]["namespace"] = NS
            for subject in obj.get("subjects") or ():
                subject["namespace"] = NS
            create, replace = calls[obj["kind"]]
            try:
                create(NS, obj)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                replace(obj["metadata"]["name"], NS, obj)

    def hub_env(self, tmp: Path) -> dict[str, str]:
        import yaml

        token = self.core.create_namespaced_service_account_token(
            HUB_SA,
            NS,
            {"apiVersion": "authentication.k8s.io/v1", "spec": {"expirationSeconds": 7200}},
        ).status.token
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "lab",
                    "cluster": {"server": self.server, "certificate-authority": self.ca},
                }
            ],
            "users": [{"name": HUB_SA, "user": {"token": token}}],
            "contexts": [
                {"name": "hub", "context": {"cluster": "lab", "user": HUB_SA, "namespace": NS}}
            ],
            "current-context": "hub",
        }
        path = tmp / "kubeconfig"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(doc))
        return {
            "KUBECONFIG": str(path),
            "RSPARKHUB_KUBERNETES_IMAGE": "rsparkhub.local/session-python:hollow",
            "RSPARKHUB_KUBERNETES_SERVICE_ACCOUNT": SESSION_SA,
            "RSPARKHUB_KUBERNETES_PROFILES": json.dumps([HOLLOW_PROFILE]),
        }

    async def tokens(self, sids: list[str]) -> dict[str, str]:
        items = (
            await asyncio.to_thread(
                self.core.list_namespaced_secret, NS, label_selector=SESSION_SELECTOR
            )
        ).items
        by_name = {s.metadata.name: s for s in items}
        out = {}
        for sid in sids:
            secret = by_name.get(f"rsparkhub-session-{sid}")
            if secret is not None:  # else the session failed and the hub deleted it
                out[sid] = base64.b64decode(secret.data["token"]).decode()
        return out

    async def phases(self) -> dict[str, str]:
        pods = (
            await asyncio.to_thread(
                self.core.list_namespaced_pod,
                NS,
                label_selector=SESSION_SELECTOR,
                resource_version="0",  # from the watch cache
            )
        ).items
        return {p.metadata.name: p.status.phase or "" for p in pods}

    async def running_pods(self) -> int:
        return sum(ph == "Running" for ph in (await self.phases()).values())

    async def create(self, secret: dict[str, Any], pod: dict[str, Any]) -> None:
        await asyncio.to_thread(self.core.create_namespaced_secret, NS, secret)
        await asyncio.to_thread(self.core.create_namespaced_pod, NS, pod)

    async def _samples(self, metric: str) -> list[tuple[dict[str, str], float]]:
        """The samples of one metric on the API server's /metrics: (labels, value)."""
        async with httpx.AsyncClient(verify=self.ca, timeout=30) as c:
            r = await c.get(
                f"{self.server}/metrics", headers={"Authorization": f"Bearer {self.admin_token}"}
            )
            r.raise_for_status()
        return [
            (
                dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")])),
                float(line.rsplit(" ", 1)[1]),
            )
            for line in r.text.splitlines()
            if line.startswith(metric + "{")
        ]

    async def calls(self) -> Counter[str]:
        """apiserver_request_total, summed over codes and scopes, by verb and resource
        (resource requests only: the /metrics scrapes themselves are not counted)."""
        out: Counter[str] = Counter()
        for labels, value in await self._samples("apiserver_request_total"):
            if not labels.get("resource"):
                continue
            res = labels["resource"]
            if labels.get("subresource"):
                res += "/" + labels["subresource"]
            if labels.get("group"):
                res += "." + labels["group"]
            out[f"{labels['verb'].lower()} {res}"] += int(value)
        return out

    async def watchers(self) -> Counter[str]:
        """Open watches by resource (apiserver_longrunning_gauge, verb WATCH)."""
        out: Counter[str] = Counter()
        for labels, value in await self._samples("apiserver_longrunning_gauge"):
            if labels.get("verb") != "WATCH":
                continue
            res = labels["resource"] + ("." + labels["group"] if labels.get("group") else "")
            out[res] += int(value)
        return out

    def single_gets(self) -> None:
        return None  # not told apart from the kubelets' in the API server's counters

    async def cleanup(self) -> None:
        """Every pod and secret of the bench's namespace deleted (grace 0), bounded."""
        await asyncio.to_thread(
            self.core.delete_collection_namespaced_pod,
            NS,
            label_selector=SESSION_SELECTOR,
            grace_period_seconds=0,
        )
        await asyncio.to_thread(
            self.core.delete_collection_namespaced_secret, NS, label_selector=SESSION_SELECTOR
        )
        t0 = time.monotonic()
        while time.monotonic() - t0 < 300 and await self.phases():
            await asyncio.sleep(2)

    def close(self) -> None:
        self.api.close()


class Fleet:
    """Socket-only agents, one per session: hello → welcome → idle; re-dial on close."""

    def __init__(self, port: int, deadline: float) -> None:
        self.url = f"ws://127.0.0.1:{port}/agent/ws"
        self.deadline = deadline
        self.connected: dict[str, bool] = {}
        self.dials = 0
        self.tasks: list[asyncio.Task[None]] = []

    def add(self, session_id: str, token: str) -> None:
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


async def ended(admin: httpx.AsyncClient, sids: list[str]) -> set[str]:
    """Of these sessions, those no longer starting, running or stopping (a failed start:
    the hub reports it dead, with its cause, and deletes the pod)."""
    r = await admin.get("/api/sessions")
    r.raise_for_status()
    live = {s["id"] for s in r.json()}
    return {sid for sid in sids if sid not in live}


def dead_causes(hub: HubProcess, sids: set[str]) -> dict[str, str]:
    """The cause the hub logged for each of these dead sessions."""
    out = {}
    for line in hub.log_path.read_text(errors="replace").splitlines():
        m = re.search(r"session ([0-9a-f]{32}) dead: (.*)", line)
        if m and m.group(1) in sids:
            out[m.group(1)] = m.group(2)
    return out


Backend = StandInBackend | LabBackend


async def steady(hub: HubProcess, backend: Backend, window: float) -> dict[str, Any]:
    """Hub RSS/CPU and API requests per minute over ``window`` seconds of idling."""
    assert hub.proc is not None
    proc = psutil.Process(hub.proc.pid)
    c0, cpu0, t0 = await backend.calls(), proc.cpu_times(), time.monotonic()
    rss: list[int] = []
    while time.monotonic() - t0 < window:
        rss.append(proc.memory_info().rss)
        await asyncio.sleep(1.0)
    c1, cpu1, t1 = await backend.calls(), proc.cpu_times(), time.monotonic()
    minutes = (t1 - t0) / 60
    per_verb = {k: v / minutes for k, v in diff(c1, c0).items()}
    watchers = await backend.watchers()
    return {
        "watchers": dict(watchers),
        "window_s": t1 - t0,
        "rss_max": max(rss),
        "rss_last": rss[-1],
        "cpu_pct": 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (t1 - t0),
        "calls_per_min": per_verb,
        "calls_per_min_total": sum(per_verb.values()),
        "threads": proc.num_threads(),
    }


async def baseline(backend: Backend, window: float) -> dict[str, Any]:
    """API requests per minute over ``window`` seconds with the hub stopped (lab)."""
    c0, t0 = await backend.calls(), time.monotonic()
    await asyncio.sleep(window)
    c1, t1 = await backend.calls(), time.monotonic()
    per_verb = {k: v / ((t1 - t0) / 60) for k, v in diff(c1, c0).items()}
    return {
        "watchers": dict(await backend.watchers()),
        "window_s": t1 - t0,
        "calls_per_min": per_verb,
        "calls_per_min_total": sum(per_verb.values()),
    }


def hub_share(
    s: dict[str, Any], b: dict[str, Any], role: set[str] | None = None
) -> dict[str, float]:
    """Per verb and resource: the hub-running rate minus the hub-stopped rate (only the
    entries that differ by at least 0.05/min either way; with ``role``, only the requests
    the hub's Role allows)."""
    keys = set(s["calls_per_min"]) | set(b["calls_per_min"])
    if role is not None:
        keys = {k for k in keys if k in role}
    out = {k: s["calls_per_min"].get(k, 0.0) - b["calls_per_min"].get(k, 0.0) for k in keys}
    return {k: v for k, v in sorted(out.items()) if abs(v) >= 0.05}


def watch_share(s: dict[str, Any], b: dict[str, Any]) -> dict[str, int]:
    """Open watches with the hub running minus with it stopped, by resource."""
    keys = set(s.get("watchers", {})) | set(b.get("watchers", {}))
    out = {k: s["watchers"].get(k, 0) - b["watchers"].get(k, 0) for k in keys}
    return {k: v for k, v in sorted(out.items()) if v}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    budget_end = time.monotonic() + args.budget
    tmp = Path(tempfile.mkdtemp(prefix="rsparkhub-k8s-bench-"))
    lab = args.cluster == "lab"
    backend: Backend = LabBackend(max(args.sizes) + args.orphans) if lab else StandInBackend()
    hub = HubProcess(
        tmp / "data",
        {
            "RSPARKHUB_SPAWNER": "kubernetes",
            "RSPARKHUB_KUBERNETES_CREDENTIALS": "kubeconfig",
            "RSPARKHUB_KUBERNETES_NAMESPACE": NS,
            "RSPARKHUB_KUBERNETES_START_TIMEOUT_S": "86400",
            "RSPARKHUB_IDLE_TIMEOUT_S": "0",
            "RSPARKHUB_SESSION_LANGUAGES": "python",
            "RSPARKHUB_EVENT_FSYNC": "false",
            **backend.hub_env(tmp),
        },
    )
    hub.env["RSPARKHUB_KUBERNETES_HUB_URL"] = f"ws://127.0.0.1:{hub.port}/agent/ws"
    _hub._LIVE.append((hub, tmp))  # killed at exit whatever happens
    fleet: Fleet | None = None
    out: dict[str, Any] = {"cluster": backend.name, "sizes": [], "notes": []}
    if isinstance(backend, LabBackend):
        out["hollow_nodes"] = backend.hollow_nodes
    poll = 1.0 if lab else 0.2  # a list of every pod each time on the real server
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
        fleet = Fleet(hub.port, budget_end)
        started = 0
        all_sids: list[str] = []
        failed: set[str] = set()  # sessions whose start failed (reported dead by the hub)
        orphans: list[str] = []

        async def restart(n: int, n_orphans: int) -> dict[str, Any]:
            """Graceful restart with n sessions running (and n_orphans orphaned pods); on
            the lab, the downtime is the hub-stopped baseline window."""
            assert fleet is not None
            for _ in range(n_orphans):
                spec = SessionSpec(
                    session_id=uuid.uuid4().hex,
                    workspace_id="orphan",
                    user="ghost",
                    token="rsa_x",
                    hub_agent_url="x",
                    session_dir=Path("/x"),
                    log_path=Path("/x/log"),
                )
                cfg = PodConfig(
                    namespace=NS, image="registry.example/x:1", hub_url="ws://x/agent/ws"
                )
                pod = build_session_pod(spec, backend.profile, cfg)
                await backend.create(build_session_secret(spec, NS), pod)
                orphans.append(pod["metadata"]["name"])

            async def orphans_running() -> bool:
                ph = await backend.phases()
                return all(ph.get(o) == "Running" for o in orphans)

            await until("orphans running", orphans_running, 120, every=poll)
            c0 = await backend.calls()
            hub.stop()
            base = None
            if lab:
                await asyncio.sleep(5)  # the hub's closed watches are counted
                base = await baseline(backend, args.window)
                print(
                    f"  baseline (hub stopped): {base['calls_per_min_total']:.1f} API calls/min",
                    flush=True,
                )
                c0 = await backend.calls()
            t0 = time.monotonic()
            await asyncio.to_thread(hub.start)  # returns once /api/health answers: adoption done
            t_ready = time.monotonic() - t0
            c_ready = await backend.calls()

            async def everyone_back() -> bool:
                return (
                    len(await running_sessions(admin)) >= n - len(failed)
                    and fleet is not None
                    and fleet.up() >= n - len(failed)
                )

            t_back = await until("sessions running again", everyone_back, 600, every=0.5)

            async def orphans_gone() -> bool:
                ph = await backend.phases()
                return not any(o in ph for o in orphans)

            t_orphans = await until("orphans deleted", orphans_gone, 120, every=poll)
            c_back = await backend.calls()
            print(
                f"  restart at {n}: answering after {t_ready:.1f} s, all running after "
                f"{t_ready + t_back:.1f} s",
                flush=True,
            )
            orphans.clear()
            return {
                "n": n,
                "orphans": n_orphans,
                "ready_s": t_ready,
                "all_running_s": t_ready + t_back,
                "orphans_deleted_s": t_ready + t_orphans,
                "calls_until_ready": diff(c_ready, c0),
                "calls_until_running": diff(c_back, c0),
                "baseline": base,
            }

        sizes = sorted(args.sizes)
        for n in sizes:
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

            all_sids.extend(sids)

            async def all_pods_running(n: int = n) -> bool:
                failed.update(await ended(admin, all_sids))
                return await backend.running_pods() >= n - len(failed)

            t_pods = (
                time.monotonic()
                - t0
                + await until("pods running", all_pods_running, 600, every=poll)
            )
            for sid, token in (await backend.tokens(list(sids))).items():
                if sid not in failed:
                    fleet.add(sid, token)

            async def all_sessions_running(n: int = n) -> bool:
                failed.update(await ended(admin, all_sids))
                return len(await running_sessions(admin)) >= n - len(failed)

            await until("sessions running", all_sessions_running, 600, every=1.0)
            t_all = time.monotonic() - t0
            started = n
            print(
                f"{n} sessions: POSTs {t_post:.1f} s, running after {time.monotonic() - t0:.1f} s",
                flush=True,
            )
            await asyncio.sleep(5)  # let the start burst settle
            s = await steady(hub, backend, args.window)
            print(
                f"  steady: RSS {mib(s['rss_last'])}, CPU {s['cpu_pct']:.1f} %, {s['calls_per_min_total']:.1f} API calls/min",
                flush=True,
            )
            row = {
                "n": n,
                "failed": len(failed),
                "failed_causes": sorted(set(dead_causes(hub, failed).values())),
                "new": len(sids),
                "post_s": t_post,
                "pods_running_s": t_pods,
                "sessions_running_s": t_all,
                **s,
            }
            if lab:  # a restart at every size: its downtime is the baseline window
                last = n == sizes[-1]
                r = await restart(n, args.orphans if last else 0)
                row["baseline"] = r["baseline"]
                row["hub_share"] = hub_share(s, r["baseline"])
                assert isinstance(backend, LabBackend)
                row["hub_share_role"] = hub_share(s, r["baseline"], backend.role)
                row["hub_watches"] = watch_share(s, r["baseline"])
                row["restart"] = r
                if last:
                    await asyncio.sleep(5)
                    r["after"] = await steady(hub, backend, max(20.0, args.window / 2))
                    out["restart"] = r
            out["sizes"].append(row)
        if not lab:
            # ---- restart with orphans
            r = await restart(started, args.orphans)
            await asyncio.sleep(5)
            r["after"] = await steady(hub, backend, max(20.0, args.window / 2))
            out["restart"] = r
        out["standin_gets"] = backend.single_gets()
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
            try:
                await backend.cleanup()
            finally:
                backend.close()
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


def standin_figures() -> dict[str, Any]:
    """The stand-in's figures as recorded in §8 of bench/RESULTS.md: its start/steady
    rows by session count and its restart measures."""
    text = _hub.RESULTS.read_text() if _hub.RESULTS.exists() else ""
    m = re.search(r"^## " + re.escape(TITLE) + r".*?(?=^## |\Z)", text, re.S | re.M)
    rows: dict[int, dict[str, str]] = {}
    restart: dict[str, str] = {}
    if not m:
        return {"rows": rows, "restart": restart}
    header: list[str] = []
    for line in m.group(0).splitlines():
        if not line.startswith("|") or line.startswith("|--"):
            header = [] if not line.startswith("|") else header
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
            continue
        if header[0] == "sessions" and cells[0].isdigit():
            rows[int(cells[0])] = dict(zip(header, cells, strict=False))
        elif header[0] == "measure":
            restart[cells[0]] = cells[1]
    return {"rows": rows, "restart": restart}


def _num(text: str) -> float | None:
    m = re.match(r"\s*([0-9.]+)", text or "")
    return float(m.group(1)) if m else None


def _ratio(lab: float | None, standin: float | None) -> str:
    if lab is None or standin is None or standin == 0:
        return "—"
    return f"{lab / standin:.2f}x"


def report_lab(data: dict[str, Any]) -> str:
    """One run on the lab: start, steady state with the hub running and stopped, restarts."""
    rows = []
    for s in data["sizes"]:
        b = s["baseline"]
        rows.append(
            [
                s["n"],
                s.get("failed", 0),
                f"{s['new'] / s['post_s']:.0f}/s",
                f"{s['pods_running_s']:.1f} s",
                f"{s['sessions_running_s']:.1f} s",
                mib(s["rss_last"]),
                f"{s['cpu_pct']:.1f} %",
                f"{s['calls_per_min_total']:.1f}",
                f"{b['calls_per_min_total']:.1f}",
                f"{s['calls_per_min_total'] - b['calls_per_min_total']:+.1f}",
                f"{sum(s['hub_share_role'].values()):+.1f}"
                + (f" ({_calls(s['hub_share_role'])})" if s["hub_share_role"] else ""),
                ", ".join(f"{k} {v:+d}" for k, v in s["hub_watches"].items()) or "none",
                s["threads"],
            ]
        )
    parts = [
        table(
            [
                "sessions",
                "failed starts (total)",
                "start rate (POST)",
                "all pods running",
                "all sessions running",
                "hub RSS",
                "hub CPU",
                "API req/min, hub running",
                "hub stopped",
                "difference",
                "difference, requests the hub's Role allows (by verb)",
                "watches open, running − stopped",
                "hub threads",
            ],
            rows,
        ),
        "",
    ]
    causes = sorted({c for s in data["sizes"] for c in s.get("failed_causes", ())})
    if causes:
        parts += [
            "Failed starts (counted in the sessions; the hub reported each dead with its "
            "cause and deleted the pod; the rest ran): " + "; ".join(causes),
            "",
        ]
    rrows = []
    for s in data["sizes"]:
        r = s["restart"]
        rrows.append(
            [
                s["n"],
                r["orphans"],
                f"{r['ready_s']:.1f} s",
                f"{r['all_running_s']:.1f} s",
                f"{r['orphans_deleted_s']:.1f} s" if r["orphans"] else "—",
                f"{sum(r['calls_until_ready'].values())}",
            ]
        )
    parts += [
        table(
            [
                "sessions",
                "orphans",
                "new hub answering (adopted)",
                "every session running again",
                "every orphan gone",
                "API requests until answering (all clients)",
            ],
            rrows,
        ),
    ]
    r = data.get("restart")
    if r and r.get("after"):
        a = r["after"]
        parts += [
            "",
            f"After the restart at {r['n']}: hub RSS {mib(a['rss_last'])}, CPU "
            f"{a['cpu_pct']:.1f} %, API requests/min (all clients) "
            f"{a['calls_per_min_total']:.1f}; requests until answering (all clients): "
            f"{_calls(r['calls_until_ready'])}.",
        ]
    return "\n".join(parts)


def _spread(vals: list[float], unit: str, fmt: str = "{:.1f}") -> str:
    if len(vals) < 2:
        return fmt.format(vals[0]) + unit
    lo, hi = min(vals), max(vals)
    sep = " to " if lo < 0 else "–"
    return f"{fmt.format(lo)}{sep}{fmt.format(hi)}{unit}"


def report_lab_runs(runs: list[dict[str, Any]]) -> str:
    """The lab section: what ran, each run, the spread, and the stand-in side by side."""
    d0 = runs[0]
    parts = [
        "The same benchmark as §8, but against the real control plane of scripts/k8s-lab.sh "
        "(etcd 3.4, kube-apiserver, kube-controller-manager and kube-scheduler of Kubernetes "
        f"1.20.2, built from Debian's source) with {d0.get('hollow_nodes', '?')} kubemark "
        "hollow nodes (`scripts/k8s-lab.sh hollow N`: hollow kubelets whose fake runtime "
        "takes a pod to Running without a container, 110 pods each). A real hub "
        "(`rsparkhub serve`, SQLite, `spawner = kubernetes`) talks to the API server as the "
        "`rsparkhub-hub` ServiceAccount with the Role of deploy/kustomize; its one profile "
        "selects and tolerates the hollow nodes and requests 5m CPU / 16Mi. The real "
        "scheduler places the pods; the hollow kubelets report them Running and post their "
        "events. As in §8, one socket-only agent per pod (this process) connects to the hub "
        f"with the pod's token; {USERS} users, {CONCURRENCY} concurrent starts.",
        "",
        "API requests per minute come from the API server's own `apiserver_request_total` "
        "(its /metrics; resource requests only). In 1.20 that counter has no user or "
        'user-agent label, so the hub\'s requests are not counted apart: "hub running" is '
        "every client's (hollow kubelets, controller-manager, scheduler, the hub), \"hub "
        'stopped" the same over an equal window right after a graceful stop (same pods, '
        "same hollow nodes), and the difference is the hub's share, noisy by the other "
        "clients' variation (a watch is counted when it ends). The difference restricted to "
        "the verbs and resources the hub's Role grants leaves out most of the others' "
        "traffic (node status, leases, pod status); the open watches come from "
        "`apiserver_longrunning_gauge` at the end of each window. That stopped window is also "
        "the downtime of a restart at every size; the last has the orphaned pods.",
    ]
    for i, d in enumerate(runs, 1):
        parts += [
            "",
            f"**Run {i}** (load average {d.get('load', ['?', '?'])[0]} → "
            f"{d.get('load', ['?', '?'])[1]}):",
            "",
            report_lab(d),
        ]
    # the spread and the stand-in side by side
    st = standin_figures()
    sizes = [s["n"] for s in d0["sizes"]]
    rows = []
    for n in sizes:
        per = [next(s for s in d["sizes"] if s["n"] == n) for d in runs]
        sr = st["rows"].get(n, {})
        rss = [s["rss_last"] / 2**20 for s in per]
        cpu = [s["cpu_pct"] for s in per]
        pods = [s["pods_running_s"] for s in per]
        allr = [s["sessions_running_s"] for s in per]
        share = [sum(s["hub_share_role"].values()) for s in per]
        ready = [s["restart"]["ready_s"] for s in per]
        back = [s["restart"]["all_running_s"] for s in per]
        med = statistics.median(rss)
        rows += [
            [
                n,
                "hub RSS (steady)",
                _spread(rss, " MiB"),
                sr.get("hub RSS", "—"),
                _ratio(med, _num(sr.get("hub RSS", ""))),
            ],
            [
                n,
                "hub CPU (steady, % of a core)",
                _spread(cpu, " %"),
                sr.get("hub CPU", "—"),
                _ratio(statistics.median(cpu), _num(sr.get("hub CPU", ""))),
            ],
            [
                n,
                "all pods running",
                _spread(pods, " s"),
                sr.get("all pods running", "—"),
                _ratio(statistics.median(pods), _num(sr.get("all pods running", ""))),
            ],
            [
                n,
                "all sessions running",
                _spread(allr, " s"),
                sr.get("all sessions running", "—"),
                _ratio(statistics.median(allr), _num(sr.get("all sessions running", ""))),
            ],
            [
                n,
                "hub's API requests/min (lab: running − stopped, Role's requests)",
                _spread(share, ""),
                sr.get("API calls/min", "—"),
                "—",
            ],
            [
                n,
                "restart: new hub answering (adopted)",
                _spread(ready, " s"),
                st["restart"].get(
                    "new hub answering (every session adopted, orphans' deletion requested)", "—"
                )
                if n == 1000
                else "—",
                _ratio(
                    statistics.median(ready),
                    _num(
                        st["restart"].get(
                            "new hub answering (every session adopted, orphans' deletion requested)",
                            "",
                        )
                    ),
                )
                if n == 1000
                else "—",
            ],
            [
                n,
                "restart: every session running again",
                _spread(back, " s"),
                st["restart"].get("every session running again (agents re-dialled)", "—")
                if n == 1000
                else "—",
                _ratio(
                    statistics.median(back),
                    _num(st["restart"].get("every session running again (agents re-dialled)", "")),
                )
                if n == 1000
                else "—",
            ],
        ]
    parts += [
        "",
        f"Spread over the {len(runs)} runs (min–max) and the stand-in's figures of §8 for "
        "the same session count (§8 has 100 and 1,000; its restart is at 1,000; ratio: "
        "lab median / stand-in):",
        "",
        table(["sessions", "measure", "lab (runs)", "stand-in (§8)", "ratio"], rows),
    ]
    return "\n".join(parts)


def lab_facts(facts: dict[str, str], data: dict[str, Any]) -> dict[str, str]:
    facts = dict(facts)
    facts["cluster"] = (
        f"scripts/k8s-lab.sh: Kubernetes 1.20.2 control plane + {data.get('hollow_nodes')} "
        "kubemark hollow nodes (and the lab's one real kubelet, not used)"
    )
    return facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--cluster",
        choices=["standin", "lab"],
        default="standin",
        help="the stand-in API server (default) or scripts/k8s-lab.sh's with hollow nodes",
    )
    ap.add_argument("--sizes", default=None, help="session counts, ascending")
    ap.add_argument("--window", type=float, default=60, help="steady-state seconds per size")
    ap.add_argument("--orphans", type=int, default=50)
    ap.add_argument("--budget", type=float, default=1500, help="seconds")
    ap.add_argument("--quick", action="store_true", help="100 then 200 sessions, 15 s windows")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--record", action="store_true", help="write the section of RESULTS.md")
    ap.add_argument(
        "--from-json",
        type=Path,
        action="append",
        help="no run: report (and with --record, record) --json runs; lab runs may be "
        "given several times (each run reported, with the spread)",
    )
    args = ap.parse_args()
    if args.from_json:
        saved_runs = [json.loads(p.read_text()) for p in args.from_json]
        first = saved_runs[0]
        if first["data"].get("cluster") == "lab":
            for sv in saved_runs:
                sv["data"]["load"] = sv["run"]["load"]
            text = report_lab_runs([sv["data"] for sv in saved_runs])
            title, script = TITLE_LAB, "bench/k8s_scale.py --cluster lab"
            facts = lab_facts(first["facts"], first["data"])
        else:
            text = report(first["data"])
            title, script, facts = TITLE, "bench/k8s_scale.py", first["facts"]
        print(text)
        if args.record:
            run = first["run"]
            wall = sum(sv["run"]["wall_s"] for sv in saved_runs)
            load = (run["load"][0], saved_runs[-1]["run"]["load"][1])
            if len(saved_runs) > 1:
                facts = dict(facts)
                facts["runs"] = f"{len(saved_runs)} (wall time is their sum)"
            record_section(title, script, text, facts, wall, load)
        return
    lab = args.cluster == "lab"
    args.sizes = [int(x) for x in str(args.sizes or ("200,1000" if lab else "100,1000")).split(",")]
    if args.quick:
        args.sizes, args.window, args.orphans = [100, 200], 15.0, 10
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t = time.monotonic()
    data = asyncio.run(main_async(args))
    wall = time.monotonic() - t
    load1 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if lab:
        data["load"] = [load0, load1]
        text = report_lab_runs([data])
    else:
        text = report(data)
    print(text)
    facts = machine_facts()
    facts["mode"] = "quick" if args.quick else "full"
    if lab:
        facts = lab_facts(facts, data)
    if args.json:
        run = {"wall_s": wall, "load": [load0, load1]}
        saved = {"data": data, "report": text, "facts": facts, "run": run}
        args.json.write_text(json.dumps(saved, indent=1))
    if args.record:
        title, script = (
            (TITLE_LAB, "bench/k8s_scale.py --cluster lab")
            if lab
            else (TITLE, "bench/k8s_scale.py")
        )
        record_section(title, script, text, facts, wall, (load0, load1))


if __name__ == "__main__":
    main()
