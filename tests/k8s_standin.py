"""A stand-in Kubernetes API server — a test double, because no Kubernetes cluster runs here.

It speaks the real Kubernetes HTTP API (the JSON the official client sends and expects)
for exactly the calls rsparkhub's Kubernetes spawner makes, on 127.0.0.1:

* ``/api/v1/namespaces/{ns}/{pods|secrets|services|persistentvolumeclaims|events}`` and
  ``/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies``:
  create, get, list and delete, merge-patch; list and ``watch=true`` with label selectors
  (``k=v``, ``k!=v``, ``k``, ``!k``, ``k in (…)``, ``k notin (…)``) and field selectors
  (``path=value``), ``resourceVersion`` bookkeeping, streaming JSON lines, bookmarks,
  ``timeoutSeconds``, and ``410 Gone`` (an ``ERROR`` event, as the real server sends) for
  a resourceVersion older than the kept history;
* ``/api/v1/namespaces/{ns}/pods/{name}/log`` and the metrics API
  (``/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods``);
* deletion as the API server and kubelet do it: a running pod gets a deletionTimestamp,
  its container SIGTERM, SIGKILL after the grace period, then the object goes; Secrets,
  Services, NetworkPolicies and pods whose ownerReferences name (by uid) a pod that is
  gone are garbage-collected (background propagation: owned pods are deleted gracefully, and their
  own dependents follow when they go);
* a scripted pod lifecycle the test chooses per workspace (``set_scenario``): Pending →
  scheduled → pulling → running → Succeeded/Failed, unschedulable, image pull failure,
  crash with an exit code, container config error, maximum age (``activeDeadlineSeconds``),
  and — scenario ``agent`` — a *real* ``python -m rsparkhub.agent`` process started with
  the pod's command, environment (``secretKeyRef`` resolved from stored Secrets) and
  volumes mapped to local directories, whose exit code becomes the container's. Spark
  driver pods (``app.kubernetes.io/component=spark-driver``) follow ``driver_scenario``
  instead (default ``run``: they run until deleted; no Spark is started);
* every object created is checked with ``kubernetes_validate`` (strict) unless disabled,
  and is refused with 422 as a real server would refuse an invalid one;
* ``drop_watches()`` cuts every open watch connection, ``expire_history()`` makes every
  older resourceVersion answer 410, and ``calls`` counts requests by (verb, resource).

What it does not do: authentication beyond a bearer token check, RBAC, admission,
scheduling decisions (the scenario decides), other resource kinds.
"""

from __future__ import annotations

import base64
import bisect
import heapq
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from eventually import eventually, eventually_sync

KINDS = {
    "pods": "Pod",
    "secrets": "Secret",
    "services": "Service",
    "persistentvolumeclaims": "PersistentVolumeClaim",
    "events": "Event",
    "networkpolicies": "NetworkPolicy",
}
API_VERSIONS = {"networkpolicies": "networking.k8s.io/v1"}  # the rest: "v1"
_PATH = re.compile(
    r"^/(?P<group>api/v1|apis/networking\.k8s\.io/v1)/namespaces/(?P<ns>[^/]+)/(?P<res>[a-z]+)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>log))?$"
)
_METRICS = re.compile(r"^/apis/metrics\.k8s\.io/v1beta1/namespaces/(?P<ns>[^/]+)/pods$")
NODE = "standin-node-1"
NODE_LABELS = {
    "kubernetes.io/hostname": NODE,
    "kubernetes.io/os": "linux",
    "kubernetes.io/arch": "amd64",
}
_NS_PATH = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+))?$")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Scenario:
    """What the stand-in's "kubelet" does with a pod.

    kind: ``run`` (runs until deleted; exits ``sigterm_exit_code`` on SIGTERM, or ignores
    it when that is None), ``agent`` (a real agent process), ``unschedulable``,
    ``image_pull_failure``, ``crash`` (runs, then exits ``exit_code`` after
    ``crash_after_s``, reason ``reason``), ``pending`` (never scheduled, no cause)."""

    kind: str = "run"
    exit_code: int = 1
    crash_after_s: float = 0.3
    reason: str = "Error"
    log: str = "Traceback (most recent call last):\nRuntimeError: the agent crashed"
    sigterm_exit_code: int | None = 0
    message: str = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."


@dataclass
class _Entry:
    rv: int
    resource: str
    ns: str
    type: str
    obj: dict[str, Any]
    line: bytes


def _split_top(text: str) -> list[str]:
    """Split a selector on commas outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return [p.strip() for p in out if p.strip()]


def parse_label_selector(text: str | None) -> list[tuple[str, str, set[str]]]:
    reqs: list[tuple[str, str, set[str]]] = []
    for part in _split_top(text or ""):
        m = re.match(r"^(\S+)\s+(in|notin)\s+\((.*)\)$", part)
        if m:
            vals = {v.strip() for v in m[3].split(",") if v.strip()}
            reqs.append((m[1], m[2], vals))
        elif "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append((k.strip(), "!=", {v.strip()}))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append((k.strip(), "=", {v.strip()}))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append((k.strip(), "=", {v.strip()}))
        elif part.startswith("!"):
            reqs.append((part[1:].strip(), "!exists", set()))
        else:
            reqs.append((part, "exists", set()))
    return reqs


def labels_match(reqs: list[tuple[str, str, set[str]]], labels: dict[str, str]) -> bool:
    for key, op, vals in reqs:
        have = key in labels
        val = labels.get(key)
        if op == "=" and (not have or val not in vals):
            return False
        if op == "!=" and have and val in vals:
            return False
        if op == "in" and (not have or val not in vals):
            return False
        if op == "notin" and have and val in vals:
            return False
        if op == "exists" and not have:
            return False
        if op == "!exists" and have:
            return False
    return True


def fields_match(text: str | None, obj: dict[str, Any]) -> bool:
    for part in _split_top(text or ""):
        neg = "!=" in part
        path, value = part.split("!=" if neg else "=", 1)
        cur: Any = obj
        for key in path.strip().lstrip("=").split("."):
            cur = cur.get(key) if isinstance(cur, dict) else None
        same = str(cur if cur is not None else "") == value.strip()
        if same == neg:
            return False
    return True


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = _merge_patch(target.get(k), v)
    return target


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class _HttpError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


class _Agent:
    """A real agent process standing in for a pod's container."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log


class StandIn:
    """The stand-in API server (see the module docstring). Use as a context manager or
    ``start()``/``close()``; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(
        self,
        *,
        step_s: float = 0.05,
        history: int = 5000,
        bookmark_s: float = 5.0,
        validate: str | None = "1.30",
        token: str = "standin-token",
        agent_root: Path | None = None,
        agent_env: dict[str, str] | None = None,
    ) -> None:
        self.step_s = step_s
        self.max_history = history
        self.bookmark_s = bookmark_s
        self.validate = validate
        self.token = token
        self.agent_root = agent_root
        self.agent_env = agent_env or {}
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 100
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {k: {} for k in KINDS}
        self.history: list[_Entry] = []
        self._history_rvs: list[int] = []
        self.compacted_rv = 0  # watches from an rv below this get 410
        self.calls: Counter[tuple[str, str]] = Counter()
        self.scenarios: dict[str, Scenario] = {}  # by workspace label value
        self.default_scenario = Scenario()
        self.driver_scenario = Scenario()  # Spark driver pods, whatever their workspace
        self.finished: dict[tuple[str, str], dict[str, Any]] = {}  # pods at removal
        self.invalid: list[str] = []  # validation errors of refused creates
        # resource -> (code, reason, message): refuse creates, e.g. a ResourceQuota's 403
        self.refuse: dict[str, tuple[int, str, str]] = {}
        self.metrics = True
        self.memory_bytes = 64 * 2**20  # reported for pods without a real process
        self.dropped_watches = 0
        self._watch_socks: set[socket.socket] = set()
        self._agents: dict[tuple[str, str], _Agent] = {}
        self._timers: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._timer_seq = itertools.count()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._ips = itertools.count(2)

    # ------------------------------------------------------------------ server
    def start(self) -> StandIn:
        standin = self

        class Handler(_Handler):
            server_standin = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 128
        t = threading.Thread(target=self._server.serve_forever, name="standin-http", daemon=True)
        t.start()
        k = threading.Thread(target=self._timer_loop, name="standin-kubelet", daemon=True)
        k.start()
        self._threads = [t, k]
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        with self.cond:
            self.cond.notify_all()
        self.drop_watches()
        for agent in list(self._agents.values()):
            _signal_group(agent.proc, signal.SIGKILL)
        for agent in list(self._agents.values()):
            try:
                agent.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            t.join(5)

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig pointing the official client at this server (JSON is YAML)."""
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "standin",
                    "context": {"cluster": "standin", "user": "standin", "namespace": namespace},
                }
            ],
            "current-context": "standin",
        }
        path.write_text(json.dumps(cfg))
        return path

    # ------------------------------------------------------------------ test controls
    def set_scenario(self, scenario: Scenario | str, workspace: str | None = None) -> None:
        sc = Scenario(kind=scenario) if isinstance(scenario, str) else scenario
        if workspace is None:
            self.default_scenario = sc
        else:
            self.scenarios[workspace] = sc

    def count(self, verb: str | None = None, resource: str | None = None) -> int:
        with self.lock:
            return sum(
                n
                for (v, r), n in self.calls.items()
                if (verb is None or v == verb) and (resource is None or r == resource)
            )

    def list(self, resource: str, ns: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                json.loads(json.dumps(o)) for (n, _), o in self.objects[resource].items() if n == ns
            ]

    def get(self, resource: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            o = self.objects[resource].get((ns, name))
            return json.loads(json.dumps(o)) if o is not None else None

    def drop_watches(self) -> int:
        """Cut every open watch connection (as a network failure or an API server restart
        would)."""
        with self.lock:
            socks = list(self._watch_socks)
            self._watch_socks.clear()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.dropped_watches += len(socks)
        return len(socks)

    def expire_history(self) -> None:
        """Forget the change history: a watch resuming from an older resourceVersion gets
        410 Gone (as after etcd compaction)."""
        with self.cond:
            self.compacted_rv = self.rv
            self.history.clear()
            self._history_rvs.clear()

    def create(self, resource: str, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object directly (as another client would)."""
        with self.cond:
            return self._create(resource, ns, json.loads(json.dumps(obj)))

    def delete_pod(self, ns: str, name: str, grace: int | None = None) -> None:
        """Delete a pod as ``kubectl delete pod`` would (graceful unless grace=0)."""
        with self.cond:
            self._delete_pod(ns, name, grace)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
        return eventually_sync(predicate, timeout, 0.02, what)

    async def until(self, predicate: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
        """``wait_for`` for async tests: the event loop keeps running meanwhile."""
        return await eventually(predicate, timeout, 0.02, what)

    def open_watches(self) -> int:
        with self.lock:
            return len(self._watch_socks)

    def agent_pid(self, ns: str, name: str) -> int | None:
        a = self._agents.get((ns, name))
        return a.proc.pid if a else None

    # ------------------------------------------------------------------ store
    def _commit(self, resource: str, ns: str, typ: str, obj: dict[str, Any]) -> None:
        """Record a change (lock held): new resourceVersion, history entry, wake watches."""
        self.rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        key = (ns, obj["metadata"]["name"])
        if typ == "DELETED":
            self.objects[resource].pop(key, None)
        else:
            self.objects[resource][key] = obj
        snapshot = json.loads(json.dumps(obj))
        line = json.dumps({"type": typ, "object": snapshot}).encode() + b"\n"
        self.history.append(_Entry(self.rv, resource, ns, typ, snapshot, line))
        self._history_rvs.append(self.rv)
        if len(self.history) > self.max_history:
            cut = len(self.history) // 2
            self.compacted_rv = self.history[cut - 1].rv
            del self.history[:cut]
            del self._history_rvs[:cut]
        self.cond.notify_all()

    def _after(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        with self.cond:
            heapq.heappush(
                self._timers, (time.monotonic() + delay, next(self._timer_seq), fn, args)
            )
            self.cond.notify_all()

    def _timer_loop(self) -> None:
        while not self._closing.is_set():
            with self.cond:
                now = time.monotonic()
                due = []
                while self._timers and self._timers[0][0] <= now:
                    due.append(heapq.heappop(self._timers))
                if not due:
                    wait = self._timers[0][0] - now if self._timers else 0.5
                    self.cond.wait(min(0.5, max(0.001, wait)))
                    continue
                for _when, _seq, fn, args in due:
                    try:
                        fn(*args)
                    except Exception as exc:  # noqa: BLE001 - a test double must not die
                        print(f"standin: timer {fn.__name__} failed: {exc!r}", file=sys.stderr)

    def _create(self, resource: str, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise _HttpError(
                422, "Invalid", f"{KINDS[resource]} is invalid: metadata.name: Required value"
            )
        if meta.get("namespace", ns) != ns:
            raise _HttpError(
                400,
                "BadRequest",
                "the namespace of the object does not match the namespace on the request",
            )
        if (ns, name) in self.objects[resource]:
            raise _HttpError(409, "AlreadyExists", f'{resource} "{name}" already exists')
        if resource in self.refuse:
            raise _HttpError(*self.refuse[resource])
        obj.setdefault("apiVersion", API_VERSIONS.get(resource, "v1"))
        obj.setdefault("kind", KINDS[resource])
        if self.validate and resource != "events":
            import kubernetes_validate

            try:
                kubernetes_validate.validate(obj, self.validate, strict=True)
            except kubernetes_validate.ValidationError as exc:
                first = str(exc).splitlines()[0]
                self.invalid.append(f"{resource}/{name}: {first}")
                raise _HttpError(
                    422, "Invalid", f'{KINDS[resource]} "{name}" is invalid: {first}'
                ) from None
        meta["namespace"] = ns
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        meta.setdefault("generation", 1)
        if resource == "pods":
            obj["status"] = {"phase": "Pending", "qosClass": "Burstable"}
            self._commit(resource, ns, "ADDED", obj)
            self._after(self.step_s, self._schedule, ns, name, meta["uid"])
            deadline = (obj.get("spec") or {}).get("activeDeadlineSeconds")
            if deadline:
                self._after(float(deadline), self._deadline, ns, name, meta["uid"])
        elif resource == "persistentvolumeclaims":
            obj["status"] = {"phase": "Pending"}
            self._commit(resource, ns, "ADDED", obj)
            self._after(self.step_s, self._bind_pvc, ns, name)
        else:
            self._commit(resource, ns, "ADDED", obj)
        return obj

    def _dry_run(self, resource: str, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Validate as a create would, store nothing (``dryRun=All``)."""
        name = (obj.get("metadata") or {}).get("name")
        if self.validate:
            import kubernetes_validate

            try:
                kubernetes_validate.validate(obj, self.validate, strict=True)
            except kubernetes_validate.ValidationError as exc:
                first = str(exc).splitlines()[0]
                raise _HttpError(
                    422, "Invalid", f'{KINDS[resource]} "{name}" is invalid: {first}'
                ) from None
        obj.setdefault("metadata", {})["namespace"] = ns
        return obj

    # ------------------------------------------------------------------ the "kubelet"
    def _pod(self, ns: str, name: str, uid: str | None = None) -> dict[str, Any] | None:
        pod = self.objects["pods"].get((ns, name))
        if pod is None or (uid is not None and pod["metadata"]["uid"] != uid):
            return None
        return pod

    def _scenario(self, pod: dict[str, Any]) -> Scenario:
        labels = pod["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/component") == "spark-driver":
            return self.driver_scenario
        return self.scenarios.get(labels.get("rsparkhub.io/workspace", ""), self.default_scenario)

    def _event(
        self,
        ns: str,
        pod: dict[str, Any],
        reason: str,
        message: str,
        typ: str = "Normal",
        field_path: str | None = None,
        source: str = "kubelet",
    ) -> None:
        """Record an Event about a pod; a repeat of the same reason bumps its count."""
        pname = pod["metadata"]["name"]
        for (n, _), ev in self.objects["events"].items():
            inv = ev["involvedObject"]
            if (
                n == ns
                and inv["name"] == pname
                and ev["reason"] == reason
                and ev["message"] == message
            ):
                ev["count"] = int(ev.get("count") or 1) + 1
                ev["lastTimestamp"] = now_iso()
                self._commit("events", ns, "MODIFIED", ev)
                return
        inv = {
            "kind": "Pod",
            "namespace": ns,
            "name": pname,
            "uid": pod["metadata"]["uid"],
            "apiVersion": "v1",
        }
        if field_path:
            inv["fieldPath"] = field_path
        ev = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{pname}.{uuid.uuid4().hex[:16]}",
                "namespace": ns,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": now_iso(),
            },
            "involvedObject": inv,
            "reason": reason,
            "message": message,
            "type": typ,
            "count": 1,
            "firstTimestamp": now_iso(),
            "lastTimestamp": now_iso(),
            "source": {"component": source},
        }
        self._commit("events", ns, "ADDED", ev)

    def _set_condition(self, pod: dict[str, Any], ctype: str, status: str, **extra: str) -> None:
        conds = pod["status"].setdefault("conditions", [])
        for c in conds:
            if c["type"] == ctype:
                if c["status"] != status:
                    c["lastTransitionTime"] = now_iso()
                c["status"] = status
                c.update(extra)
                return
        conds.append({"type": ctype, "status": status, "lastTransitionTime": now_iso(), **extra})

    def _schedule(self, ns: str, name: str, uid: str, attempt: int = 0) -> None:
        pod = self._pod(ns, name, uid)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        sc = self._scenario(pod)
        if sc.kind == "pending":
            return
        why = sc.message if sc.kind == "unschedulable" else _no_node_for(pod)
        if why:
            self._set_condition(pod, "PodScheduled", "False", reason="Unschedulable", message=why)
            self._commit("pods", ns, "MODIFIED", pod)
            self._event(ns, pod, "FailedScheduling", why, "Warning", source="default-scheduler")
            if attempt < 20:
                self._after(max(0.5, self.step_s * 10), self._schedule, ns, name, uid, attempt + 1)
            return
        pod["spec"]["nodeName"] = NODE
        pod["status"]["startTime"] = now_iso()
        self._set_condition(pod, "PodScheduled", "True")
        self._set_condition(
            pod, "Initialized", "False" if pod["spec"].get("initContainers") else "True"
        )
        self._set_condition(pod, "Ready", "False")
        if pod["spec"].get("initContainers"):
            pod["status"]["initContainerStatuses"] = [
                _cstatus(c, {"waiting": {"reason": "PodInitializing"}})
                for c in pod["spec"]["initContainers"]
            ]
        pod["status"]["containerStatuses"] = [
            _cstatus(c, {"waiting": {"reason": "ContainerCreating"}})
            for c in pod["spec"]["containers"]
        ]
        self._commit("pods", ns, "MODIFIED", pod)
        self._event(
            ns,
            pod,
            "Scheduled",
            f"Successfully assigned {ns}/{name} to {NODE}",
            source="default-scheduler",
        )
        self._after(self.step_s, self._pull, ns, name, uid)

    def _pull(self, ns: str, name: str, uid: str) -> None:
        pod = self._pod(ns, name, uid)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        sc = self._scenario(pod)
        first = (pod["spec"].get("initContainers") or pod["spec"]["containers"])[0]
        image = first["image"]
        path = _field_path(pod, first["name"])
        self._event(ns, pod, "Pulling", f'Pulling image "{image}"', field_path=path)
        if sc.kind == "image_pull_failure" or image.split("/")[0].endswith(".invalid"):
            self._after(self.step_s, self._pull_failed, ns, name, uid, image, first["name"], path)
            return
        self._after(self.step_s, self._pulled, ns, name, uid)

    def _pull_failed(self, ns: str, name: str, uid: str, image: str, cname: str, path: str) -> None:
        pod = self._pod(ns, name, uid)
        if pod is None:
            return
        msg = (
            f'failed to pull and unpack image "{image}": failed to resolve reference '
            f'"{image}": {image}: not found'
        )
        self._event(ns, pod, "Failed", f'Failed to pull image "{image}": {msg}', "Warning", path)
        self._event(ns, pod, "Failed", "Error: ErrImagePull", "Warning", path)
        _set_state(pod, cname, {"waiting": {"reason": "ErrImagePull", "message": msg}})
        self._commit("pods", ns, "MODIFIED", pod)
        self._event(ns, pod, "BackOff", f'Back-off pulling image "{image}"', "Normal", path)

    def _pulled(self, ns: str, name: str, uid: str) -> None:
        pod = self._pod(ns, name, uid)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        for c in pod["spec"].get("initContainers") or []:
            path = _field_path(pod, c["name"])
            self._event(
                ns,
                pod,
                "Pulled",
                f'Successfully pulled image "{c["image"]}" in 51ms',
                field_path=path,
            )
            self._event(ns, pod, "Created", f"Created container {c['name']}", field_path=path)
            self._event(ns, pod, "Started", f"Started container {c['name']}", field_path=path)
            code, out = self._run_init(ns, pod, c)
            _set_state(
                pod,
                c["name"],
                _terminated(code, "Completed" if code == 0 else "Error", out if code else ""),
            )
            if code != 0:
                pod["status"]["phase"] = "Failed"
                self._commit("pods", ns, "MODIFIED", pod)
                return
        self._set_condition(pod, "Initialized", "True")
        c = pod["spec"]["containers"][0]
        path = _field_path(pod, c["name"])
        self._event(
            ns,
            pod,
            "Pulled",
            f'Container image "{c["image"]}" already present on machine',
            field_path=path,
        )
        try:
            env = self._resolve_env(ns, c)
        except _HttpError as exc:
            _set_state(
                pod,
                c["name"],
                {"waiting": {"reason": "CreateContainerConfigError", "message": exc.message}},
            )
            self._commit("pods", ns, "MODIFIED", pod)
            self._event(ns, pod, "Failed", f"Error: {exc.message}", "Warning", path)
            return
        self._event(ns, pod, "Created", f"Created container {c['name']}", field_path=path)
        sc = self._scenario(pod)
        if sc.kind == "agent":
            try:
                self._start_agent(ns, pod, c, env)
            except OSError as exc:
                _set_state(
                    pod,
                    c["name"],
                    {"waiting": {"reason": "RunContainerError", "message": str(exc)}},
                )
                self._commit("pods", ns, "MODIFIED", pod)
                return
        self._event(ns, pod, "Started", f"Started container {c['name']}", field_path=path)
        _set_state(pod, c["name"], {"running": {"startedAt": now_iso()}}, ready=True)
        pod["status"]["phase"] = "Running"
        pod["status"]["podIP"] = f"10.0.0.{next(self._ips) % 250 + 2}"
        self._set_condition(pod, "ContainersReady", "True")
        self._set_condition(pod, "Ready", "True")
        self._commit("pods", ns, "MODIFIED", pod)
        if sc.kind == "crash":
            self._after(sc.crash_after_s, self._crash, ns, name, uid)

    def _crash(self, ns: str, name: str, uid: str) -> None:
        pod = self._pod(ns, name, uid)
        if pod is None:
            return
        sc = self._scenario(pod)
        self._container_exit(ns, pod, sc.exit_code, sc.reason, sc.log)

    def _deadline(self, ns: str, name: str, uid: str) -> None:
        pod = self._pod(ns, name, uid)
        if pod is None or pod["status"]["phase"] in ("Succeeded", "Failed"):
            return
        pod["status"]["reason"] = "DeadlineExceeded"
        pod["status"]["message"] = "Pod was active on the node longer than the specified deadline"
        self._event(ns, pod, "DeadlineExceeded", pod["status"]["message"], "Normal")
        self._kill(ns, pod, int(pod["spec"].get("terminationGracePeriodSeconds") or 30))

    def _bind_pvc(self, ns: str, name: str) -> None:
        pvc = self.objects["persistentvolumeclaims"].get((ns, name))
        if pvc is None:
            return
        pvc["status"] = {
            "phase": "Bound",
            "accessModes": pvc["spec"].get("accessModes"),
            "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
        }
        pvc["spec"]["volumeName"] = f"pv-{pvc['metadata']['uid'][:8]}"
        self._commit("persistentvolumeclaims", ns, "MODIFIED", pvc)

    def _container_exit(
        self, ns: str, pod: dict[str, Any], code: int, reason: str, log: str
    ) -> None:
        """The session container ended: record its state; the pod becomes terminal."""
        c = pod["spec"]["containers"][0]
        fallback = c.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        message = log if code != 0 and fallback else ""
        _set_state(pod, c["name"], _terminated(code, reason, message), ready=False)
        if pod["status"].get("reason") != "DeadlineExceeded":
            pod["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
        else:
            pod["status"]["phase"] = "Failed"
        self._set_condition(pod, "Ready", "False", reason="PodCompleted")
        self._set_condition(pod, "ContainersReady", "False", reason="PodCompleted")
        self._commit("pods", ns, "MODIFIED", pod)
        self._agents.pop((ns, pod["metadata"]["name"]), None)
        if pod["metadata"].get("deletionTimestamp"):
            self._after(
                self.step_s, self._remove_pod, ns, pod["metadata"]["name"], pod["metadata"]["uid"]
            )

    def _kill(self, ns: str, pod: dict[str, Any], grace: int) -> None:
        """SIGTERM the container; SIGKILL after the grace period."""
        name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
        c = pod["spec"]["containers"][0]
        self._event(
            ns,
            pod,
            "Killing",
            f"Stopping container {c['name']}",
            field_path=_field_path(pod, c["name"]),
        )
        agent = self._agents.get((ns, name))
        if agent is not None:
            _signal_group(agent.proc, signal.SIGTERM)
        else:
            sc = self._scenario(pod)
            if sc.sigterm_exit_code is not None:
                self._after(self.step_s, self._exit_on_term, ns, name, uid, sc.sigterm_exit_code)
        self._after(max(float(grace), self.step_s), self._sigkill, ns, name, uid)

    def _exit_on_term(self, ns: str, name: str, uid: str, code: int) -> None:
        pod = self._pod(ns, name, uid)
        if pod is not None and pod["status"]["phase"] == "Running":
            self._container_exit(ns, pod, code, "Completed" if code == 0 else "Error", "")

    def _sigkill(self, ns: str, name: str, uid: str) -> None:
        pod = self._pod(ns, name, uid)
        if pod is None:
            return
        agent = self._agents.get((ns, name))
        if agent is not None:
            _signal_group(agent.proc, signal.SIGKILL)  # its exit watcher records 137
            return
        if pod["status"]["phase"] == "Running":
            self._container_exit(ns, pod, 137, "Error", "")

    def _delete_pod(self, ns: str, name: str, grace: int | None) -> dict[str, Any]:
        pod = self._pod(ns, name)
        if pod is None:
            raise _HttpError(404, "NotFound", f'pods "{name}" not found')
        if grace is None:
            grace = int(pod["spec"].get("terminationGracePeriodSeconds") or 30)
        running = pod["status"]["phase"] == "Running"
        if grace == 0 or not running:
            agent = self._agents.pop((ns, name), None)
            if agent is not None:
                _signal_group(agent.proc, signal.SIGKILL)
            if not pod["metadata"].get("deletionTimestamp"):
                pod["metadata"]["deletionTimestamp"] = now_iso()
                pod["metadata"]["deletionGracePeriodSeconds"] = grace
            self._remove_pod(ns, name, pod["metadata"]["uid"])
            return pod
        if pod["metadata"].get("deletionTimestamp"):
            return pod  # already terminating
        pod["metadata"]["deletionTimestamp"] = now_iso()
        pod["metadata"]["deletionGracePeriodSeconds"] = grace
        self._commit("pods", ns, "MODIFIED", pod)
        self._kill(ns, pod, grace)
        return pod

    def _remove_pod(self, ns: str, name: str, uid: str) -> None:
        pod = self._pod(ns, name, uid)
        if pod is None:
            return
        self._commit("pods", ns, "DELETED", pod)
        self.finished[(ns, name)] = json.loads(json.dumps(pod))
        # Garbage collection of dependents (Secrets, Services, NetworkPolicies, pods owned
        # by the pod).
        for res in ("secrets", "services", "networkpolicies"):
            for (n, _oname), obj in list(self.objects[res].items()):
                owners = obj["metadata"].get("ownerReferences") or []
                if n == ns and any(o.get("uid") == uid for o in owners):
                    self._commit(res, ns, "DELETED", obj)
        for (n, pname), dep in list(self.objects["pods"].items()):
            owners = dep["metadata"].get("ownerReferences") or []
            if n == ns and any(o.get("uid") == uid for o in owners):
                self._delete_pod(ns, pname, None)

    # ------------------------------------------------------------------ real agents
    def _resolve_env(self, ns: str, c: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for e in c.get("env") or []:
            if "value" in e:
                env[e["name"]] = e["value"]
                continue
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                secret = self.objects["secrets"].get((ns, ref["name"]))
                if secret is None:
                    raise _HttpError(0, "", f'secret "{ref["name"]}" not found')
                data = secret.get("data") or {}
                if ref["key"] not in data:
                    raise _HttpError(
                        0, "", f"couldn't find key {ref['key']} in Secret {ns}/{ref['name']}"
                    )
                env[e["name"]] = base64.b64decode(data[ref["key"]]).decode()
        return env

    def _mounts(self, ns: str, pod: dict[str, Any], c: dict[str, Any]) -> list[tuple[str, str]]:
        """(container path, local path) of a container's volumes, longest first."""
        assert self.agent_root is not None
        root = self.agent_root / ns / pod["metadata"]["name"]
        vols = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        out = []
        for m in c.get("volumeMounts") or []:
            v = vols.get(m["name"], {})
            if "persistentVolumeClaim" in v:
                local = self.agent_root / "pvcs" / ns / v["persistentVolumeClaim"]["claimName"]
            else:
                local = root / "volumes" / m["name"]
            local.mkdir(parents=True, exist_ok=True)
            out.append((m["mountPath"], str(local)))
        return sorted(out, key=lambda x: -len(x[0]))

    @staticmethod
    def _map(mounts: list[tuple[str, str]], value: str) -> str:
        for path, local in mounts:
            if value == path or value.startswith(path + "/"):
                return local + value[len(path) :]
        return value

    def _command(self, mounts: list[tuple[str, str]], c: dict[str, Any]) -> list[str]:
        cmd = [*(c.get("command") or []), *(c.get("args") or [])]
        out = [self._map(mounts, a) if a.startswith("/") else a for a in cmd]
        if out and out[0] in ("python", "python3"):
            # this machine's interpreter, never mapped: a checkout under /tmp would
            # otherwise land in the pod's /tmp volume
            out[0] = sys.executable
        return out

    def _run_init(self, ns: str, pod: dict[str, Any], c: dict[str, Any]) -> tuple[int, str]:
        if self._scenario(pod).kind != "agent" or self.agent_root is None:
            return 0, ""
        mounts = self._mounts(ns, pod, c)
        out = subprocess.run(self._command(mounts, c), capture_output=True, text=True, timeout=30)
        return out.returncode, out.stdout + out.stderr

    def _start_agent(
        self, ns: str, pod: dict[str, Any], c: dict[str, Any], env: dict[str, str]
    ) -> None:
        if self.agent_root is None:
            raise OSError("the stand-in has no agent_root: it cannot run real agents")
        mounts = self._mounts(ns, pod, c)
        full = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            **self.agent_env,
        }
        for k, v in env.items():
            full[k] = self._map(mounts, v) if v.startswith("/") else v
        root = self.agent_root / ns / pod["metadata"]["name"]
        root.mkdir(parents=True, exist_ok=True)
        log_path = root / "container.log"
        cwd = self._map(mounts, c.get("workingDir") or "/")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                self._command(mounts, c),
                env=full,
                cwd=cwd if os.path.isdir(cwd) else str(root),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        key = (ns, pod["metadata"]["name"])
        self._agents[key] = _Agent(proc, log_path)
        threading.Thread(
            target=self._watch_agent,
            args=(ns, pod["metadata"]["name"], pod["metadata"]["uid"], proc, log_path),
            name=f"standin-agent-{pod['metadata']['name']}",
            daemon=True,
        ).start()

    def _watch_agent(
        self, ns: str, name: str, uid: str, proc: subprocess.Popen[bytes], log: Path
    ) -> None:
        code = proc.wait()
        if code < 0:
            code = 128 - code  # killed by signal N: 128 + N, as container runtimes report
        try:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            tail = ""
        with self.cond:
            pod = self._pod(ns, name, uid)
            if pod is None or pod["status"]["phase"] in ("Succeeded", "Failed"):
                return
            self._container_exit(ns, pod, code, "Completed" if code == 0 else "Error", tail)

    def _memory_of(self, ns: str, name: str) -> int:
        agent = self._agents.get((ns, name))
        if agent is None:
            return self.memory_bytes
        try:
            import psutil

            p = psutil.Process(agent.proc.pid)
            return sum(x.memory_info().rss for x in [p, *p.children(recursive=True)])
        except Exception:  # noqa: BLE001
            return 0

    # ------------------------------------------------------------------ requests
    def handle(self, h: _Handler, method: str) -> None:
        url = urlsplit(h.path)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        auth = h.headers.get("Authorization", "")
        if self.token and auth != f"Bearer {self.token}":
            h.send_json(401, _status(401, "Unauthorized", "Unauthorized"))
            return
        if url.path == "/version":
            h.send_json(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-standin"})
            return
        m = _METRICS.match(url.path)
        if m and method == "GET":
            with self.lock:
                self.calls[("list", "pods.metrics.k8s.io")] += 1
                if not self.metrics:
                    h.send_json(
                        404,
                        _status(
                            404, "NotFound", "the server could not find the requested resource"
                        ),
                    )
                    return
                reqs = parse_label_selector(q.get("labelSelector"))
                items = []
                for (n, pname), pod in self.objects["pods"].items():
                    if n != m["ns"] or pod["status"]["phase"] != "Running":
                        continue
                    if not labels_match(reqs, pod["metadata"].get("labels") or {}):
                        continue
                    mem = self._memory_of(n, pname)
                    items.append(
                        {
                            "metadata": {"name": pname, "namespace": n},
                            "timestamp": now_iso(),
                            "window": "30s",
                            "containers": [
                                {
                                    "name": "session",
                                    "usage": {"cpu": "1m", "memory": f"{mem // 1024}Ki"},
                                }
                            ],
                        }
                    )
            h.send_json(
                200,
                {
                    "kind": "PodMetricsList",
                    "apiVersion": "metrics.k8s.io/v1beta1",
                    "metadata": {},
                    "items": items,
                },
            )
            return
        m = _NS_PATH.match(url.path)
        if m:  # every namespace exists; creating one is accepted
            with self.lock:
                self.calls[("get" if method == "GET" else "create", "namespaces")] += 1
            name = m["name"] or (h.read_json(optional=True) or {}).get("metadata", {}).get("name")
            ns_obj = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name},
                "status": {"phase": "Active"},
            }
            h.send_json(201 if method == "POST" else 200, ns_obj)
            return
        m = _PATH.match(url.path)
        if (
            not m
            or m["res"] not in KINDS
            or m["group"]
            != ("apis/" + API_VERSIONS[m["res"]] if m["res"] in API_VERSIONS else "api/v1")
        ):
            h.send_json(
                404, _status(404, "NotFound", "the server could not find the requested resource")
            )
            return
        ns, res, name, sub = m["ns"], m["res"], m["name"], m["sub"]
        try:
            if sub == "log":
                self._serve_log(h, ns, name, q)
            elif method == "GET" and name is None and q.get("watch") in ("true", "1"):
                with self.lock:
                    self.calls[("watch", res)] += 1
                self._serve_watch(h, res, ns, q)
            elif method == "GET" and name is None:
                self._serve_list(h, res, ns, q)
            elif method == "GET":
                with self.lock:
                    self.calls[("get", res)] += 1
                    obj = self.objects[res].get((ns, name))
                    if obj is None:
                        raise _HttpError(404, "NotFound", f'{res} "{name}" not found')
                    body = json.loads(json.dumps(obj))
                h.send_json(200, body)
            elif method == "POST" and name is None:
                obj = h.read_json()
                with self.cond:
                    self.calls[("create", res)] += 1
                    if q.get("dryRun") == "All":
                        body = self._dry_run(res, ns, obj)
                    else:
                        body = json.loads(json.dumps(self._create(res, ns, obj)))
                h.send_json(201, body)
            elif method == "DELETE" and name is None:  # deletecollection
                reqs = parse_label_selector(q.get("labelSelector"))
                grace = q.get("gracePeriodSeconds")
                with self.cond:
                    self.calls[("deletecollection", res)] += 1
                    for (n, oname), o in list(self.objects[res].items()):
                        if n != ns or not self._matches(o, reqs, q.get("fieldSelector")):
                            continue
                        if res == "pods":
                            self._delete_pod(ns, oname, int(grace) if grace else None)
                        else:
                            self._commit(res, ns, "DELETED", o)
                h.send_json(
                    200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
                )
            elif method == "DELETE" and name is not None:
                opts = h.read_json(optional=True) or {}
                grace = q.get("gracePeriodSeconds", opts.get("gracePeriodSeconds"))
                with self.cond:
                    self.calls[("delete", res)] += 1
                    if res == "pods":
                        obj = self._delete_pod(
                            ns, name, int(grace) if grace not in (None, "") else None
                        )
                    else:
                        obj = self.objects[res].get((ns, name))
                        if obj is None:
                            raise _HttpError(404, "NotFound", f'{res} "{name}" not found')
                        self._commit(res, ns, "DELETED", obj)
                    body = json.loads(json.dumps(obj))
                h.send_json(200, body)
            elif method == "PATCH" and name is not None:
                ctype = h.headers.get("Content-Type", "")
                if "json-patch" in ctype:
                    raise _HttpError(
                        415, "UnsupportedMediaType", "the stand-in supports merge patches only"
                    )
                patch = h.read_json()
                with self.cond:
                    self.calls[("patch", res)] += 1
                    obj = self.objects[res].get((ns, name))
                    if obj is None:
                        raise _HttpError(404, "NotFound", f'{res} "{name}" not found')
                    if (
                        res == "secrets"
                        and obj.get("immutable")
                        and ("data" in patch or "stringData" in patch)
                    ):
                        raise _HttpError(
                            422,
                            "Invalid",
                            f'Secret "{name}" is invalid: data: Forbidden: field is immutable when `immutable` is set',
                        )
                    _merge_patch(obj, patch)
                    self._commit(res, ns, "MODIFIED", obj)
                    body = json.loads(json.dumps(obj))
                h.send_json(200, body)
            else:
                raise _HttpError(405, "MethodNotAllowed", f"{method} is not supported here")
        except _HttpError as exc:
            h.send_json(exc.code, _status(exc.code, exc.reason, exc.message))

    def _serve_log(self, h: _Handler, ns: str, name: str, q: dict[str, str]) -> None:
        with self.lock:
            self.calls[("get", "pods/log")] += 1
            if self._pod(ns, name) is None:
                raise _HttpError(404, "NotFound", f'pods "{name}" not found')
        path = (self.agent_root / ns / name / "container.log") if self.agent_root else None
        text = path.read_text(errors="replace") if path and path.exists() else ""
        tail = int(q.get("tailLines") or 0)
        if tail:
            text = "\n".join(text.splitlines()[-tail:]) + "\n"
        h.send_bytes(200, text.encode(), "text/plain")

    def _matches(
        self, obj: dict[str, Any], reqs: list[tuple[str, str, set[str]]], fsel: str | None
    ) -> bool:
        return labels_match(reqs, (obj.get("metadata") or {}).get("labels") or {}) and fields_match(
            fsel, obj
        )

    def _serve_list(self, h: _Handler, res: str, ns: str, q: dict[str, str]) -> None:
        reqs = parse_label_selector(q.get("labelSelector"))
        fsel = q.get("fieldSelector")
        with self.lock:
            self.calls[("list", res)] += 1
            items = [
                json.loads(json.dumps(o))
                for (n, _), o in self.objects[res].items()
                if n == ns and self._matches(o, reqs, fsel)
            ]
            rv = self.rv
        limit = int(q.get("limit") or 0)
        if limit:
            items = items[:limit]
        h.send_json(
            200,
            {
                "kind": f"{KINDS[res]}List",
                "apiVersion": API_VERSIONS.get(res, "v1"),
                "metadata": {"resourceVersion": str(rv)},
                "items": items,
            },
        )

    def _serve_watch(self, h: _Handler, res: str, ns: str, q: dict[str, str]) -> None:
        reqs = parse_label_selector(q.get("labelSelector"))
        fsel = q.get("fieldSelector")
        timeout = float(q.get("timeoutSeconds") or 1800)
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        rv_param = q.get("resourceVersion") or ""
        h.start_stream()
        sock = h.connection
        initial: list[bytes] = []
        with self.cond:
            if rv_param in ("", "0"):
                pos = self.rv
                for (n, _), o in self.objects[res].items():
                    if n == ns and self._matches(o, reqs, fsel):
                        initial.append(json.dumps({"type": "ADDED", "object": o}).encode() + b"\n")
            else:
                pos = int(rv_param)
                if pos < self.compacted_rv:
                    status = _status(
                        410, "Expired", f"too old resource version: {pos} ({self.compacted_rv})"
                    )
                    line = json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"
                    h.chunk(line)
                    h.end_stream()
                    return
            self._watch_socks.add(sock)
        try:
            for line in initial:
                h.chunk(line)
            end = time.monotonic() + timeout
            last_bookmark = time.monotonic()
            while not self._closing.is_set():
                left = end - time.monotonic()
                if left <= 0:
                    break
                with self.cond:
                    if sock not in self._watch_socks:
                        return  # dropped on purpose: no clean end
                    i = bisect.bisect_right(self._history_rvs, pos)
                    if i >= len(self.history):
                        self.cond.wait(min(left, self.bookmark_s, 1.0))
                        i = bisect.bisect_right(self._history_rvs, pos)
                    if pos < self.compacted_rv:
                        lines = [
                            json.dumps(
                                {
                                    "type": "ERROR",
                                    "object": _status(
                                        410,
                                        "Expired",
                                        f"too old resource version: {pos} ({self.compacted_rv})",
                                    ),
                                }
                            ).encode()
                            + b"\n"
                        ]
                        batch: list[_Entry] = []
                    else:
                        batch = self.history[i:]
                        lines = []
                    current = self.rv
                for e in batch:
                    pos = e.rv
                    if e.resource == res and e.ns == ns and self._matches(e.obj, reqs, fsel):
                        lines.append(e.line)
                if lines:
                    h.chunk(b"".join(lines))
                    if lines[0].startswith(b'{"type": "ERROR"'):
                        break
                elif bookmarks and time.monotonic() - last_bookmark >= self.bookmark_s:
                    pos = max(pos, current)
                    mark = {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": KINDS[res],
                            "apiVersion": "v1",
                            "metadata": {"resourceVersion": str(pos)},
                        },
                    }
                    h.chunk(json.dumps(mark).encode() + b"\n")
                    last_bookmark = time.monotonic()
            h.end_stream()
        except OSError:
            pass  # the client went away, or drop_watches() cut us off
        finally:
            with self.lock:
                self._watch_socks.discard(sock)


def _no_node_for(pod: dict[str, Any]) -> str | None:
    """Why the stand-in's one node cannot run the pod (the scheduler's words), if so."""
    selector = pod["spec"].get("nodeSelector") or {}
    if any(NODE_LABELS.get(k) != v for k, v in selector.items()):
        return (
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "
            "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        )
    for c in pod["spec"]["containers"]:
        limits = (c.get("resources") or {}).get("limits") or {}
        if "nvidia.com/gpu" in limits:
            return (
                "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes "
                "are available: 1 No preemption victims found for incoming pod."
            )
    return None


def _field_path(pod: dict[str, Any], cname: str) -> str:
    for c in pod["spec"].get("initContainers") or []:
        if c["name"] == cname:
            return f"spec.initContainers{{{cname}}}"
    return f"spec.containers{{{cname}}}"


def _cstatus(c: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": c["name"],
        "image": c["image"],
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": state,
    }


def _set_state(pod: dict[str, Any], cname: str, state: dict[str, Any], ready: bool = False) -> None:
    for key in ("initContainerStatuses", "containerStatuses"):
        for s in pod["status"].get(key) or []:
            if s["name"] == cname:
                s["state"] = state
                s["ready"] = ready
                s["started"] = "running" in state
                return


def _terminated(code: int, reason: str, message: str) -> dict[str, Any]:
    t: dict[str, Any] = {
        "exitCode": code,
        "reason": reason,
        "startedAt": now_iso(),
        "finishedAt": now_iso(),
    }
    if message:
        t["message"] = message[-4096:]
    return {"terminated": t}


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_standin: StandIn

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    def read_json(self, optional: bool = False) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            if optional:
                return None
            raise _HttpError(400, "BadRequest", "a JSON body is required")
        try:
            return json.loads(raw)
        except ValueError:
            raise _HttpError(400, "BadRequest", "the body is not JSON") from None

    def send_bytes(self, code: int, data: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, code: int, body: Any) -> None:
        self.send_bytes(code, json.dumps(body).encode(), "application/json")

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _dispatch(self, method: str) -> None:
        try:
            self.server_standin.handle(self, method)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")


def main() -> None:
    """Run the stand-in on its own (e.g. to dry-run tests/test_k8s_cluster.py):

    python tests/k8s_standin.py --kubeconfig /tmp/standin.kubeconfig [--scenario agent]
    """
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--kubeconfig", type=Path, required=True)
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--scenario", default="run")
    ap.add_argument("--agent-root", type=Path, default=None)
    ap.add_argument("--step", type=float, default=0.05)
    args = ap.parse_args()
    import tempfile

    root = args.agent_root or Path(tempfile.mkdtemp(prefix="standin-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with StandIn(step_s=args.step, agent_root=root) as standin:
        standin.set_scenario(args.scenario)
        standin.kubeconfig(args.kubeconfig, args.namespace)
        print(f"stand-in API server at {standin.url}; kubeconfig {args.kubeconfig}", flush=True)
        try:
            while not stop.wait(1):
                pass
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
