"""The Kubernetes spawner: one pod per session (plus a Secret holding its token), watched —
never polled — by one watch over all session pods and one over their events.

How it works:

* ``start`` creates the session's Secret, then its pod (``k8s_objects.build_session_pod``),
  then makes the pod the Secret's owner so the Secret goes with it. The optional per-user
  package volume (PVC) is created on a user's first session. The pod runs as the user's
  own uid (``SessionSpec.uid``, else ``kubernetes_session_uid``), which the returned state
  records (``run_as_user``, ``run_as_group``) for the session's Spark driver.
* Two watch threads (pods by label ``app.kubernetes.io/name=rsparkhub,
  app.kubernetes.io/component=session``; Events of pods) list once, then watch from the
  list's ``resourceVersion``, reconnect after a dropped connection from the last version
  they saw, and list again after ``410 Gone``. They feed an in-memory cache on the event
  loop; ``poll``, ``wait`` and ``memory`` read only the cache. API calls per session are
  the creates and deletes of its objects — none while it runs.
* Pod events become start-up progress lines for the session's clients (``Scheduled``,
  ``Pulling``, ``Started`` …), through ``SessionSpec.progress``.
* ``wait`` returns how the session ended, naming the cause: the container's exit code (0
  after a stop: the agent exits 0 on SIGTERM), out of memory, unschedulable for longer
  than ``kubernetes_start_failure_grace_s``, an image that cannot be pulled (at once), the
  maximum age reached, eviction, or a pod deleted outside the hub. Start failures and
  finished pods are deleted once their result is read.
* ``stop`` deletes the pod with a grace period (SIGTERM, then SIGKILL after it).
* After a hub restart ``poll`` answers from the first list (adoption); ``reconcile``
  deletes session pods and Secrets whose session the hub does not know.

Blocking client calls run in a small thread pool of this spawner (not the event loop's
default executor, which the rest of the hub uses); the watches have their own threads.
Responses are read as JSON (``_preload_content=False``) rather than as client models: the
cache keeps only the few fields it needs, which keeps a hub with 1,000 pods small.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from rsparkhub.hub.spawners.base import SessionSpec, SpawnError
from rsparkhub.hub.spawners.k8s_objects import (
    CONTAINER,
    SESSION_ANNOTATION,
    SESSION_LABEL,
    SESSION_SELECTOR,
    PodConfig,
    build_session_pod,
    build_session_secret,
    build_user_pvc,
    owner_reference,
    pod_name,
    pvc_name,
    session_identity,
)
from rsparkhub.hub.spawners.k8s_profiles import KubernetesProfile, parse_quantity

if TYPE_CHECKING:
    from rsparkhub.config import Settings

log = logging.getLogger("rsparkhub.k8s")

# Container waiting reasons that end a start at once (kubelet would only retry them).
PULL_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
CREATE_FAILURES = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)
TERMINAL = ("Succeeded", "Failed")
_PROGRESS_LABELS = {
    "Scheduled": "Scheduled",
    "FailedScheduling": "Waiting for a node",
    "Pulling": "Pulling the session image",
    "Pulled": "Image ready",
    "Created": "Container created",
    "Started": "Container started; waiting for the session to connect",
    "BackOff": "Back-off",
    "Failed": "Failed",
    "FailedMount": "Waiting for a volume",
    "FailedAttachVolume": "Waiting for a volume",
    "SuccessfulAttachVolume": "Volume attached",
    "Killing": "Stopping",
}


def default_profile() -> KubernetesProfile:
    return KubernetesProfile(
        name="default",
        display_name="Default",
        description="The standard session image with the default resources.",
        default=True,
    )


@dataclass(slots=True)
class PodView:
    """What the cache keeps of a pod: the few fields that decide its fate."""

    name: str
    uid: str
    session_id: str
    phase: str
    deleting: bool
    node: str | None
    reason: str | None  # status.reason: DeadlineExceeded, Evicted …
    message: str | None
    unschedulable: str | None  # the PodScheduled=False message
    unschedulable_since: float | None  # epoch seconds
    waiting: tuple[str, str, str] | None  # (reason, message, container)
    running: bool
    terminated: tuple[int, str, str, str] | None  # (exit code, reason, message, container)

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> PodView:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        st = obj.get("status") or {}
        labels = meta.get("labels") or {}
        ann = meta.get("annotations") or {}
        unsched = since = None
        for c in st.get("conditions") or ():
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                unsched = c.get("message") or c.get("reason") or "unschedulable"
                since = _epoch(c.get("lastTransitionTime"))
        waiting: tuple[str, str, str] | None = None
        terminated: tuple[int, str, str, str] | None = None
        running = False
        for cs in st.get("initContainerStatuses") or ():
            state = cs.get("state") or {}
            w, t = state.get("waiting"), state.get("terminated")
            if w and waiting is None:
                waiting = (w.get("reason") or "", w.get("message") or "", cs.get("name") or "")
            if t and int(t.get("exitCode") or 0) != 0 and terminated is None:
                terminated = (
                    int(t.get("exitCode") or 0),
                    t.get("reason") or "",
                    t.get("message") or "",
                    cs.get("name") or "",
                )
        for cs in st.get("containerStatuses") or ():
            if cs.get("name") != CONTAINER:
                continue
            state = cs.get("state") or {}
            w, r, t = state.get("waiting"), state.get("running"), state.get("terminated")
            if w and waiting is None:
                waiting = (w.get("reason") or "", w.get("message") or "", CONTAINER)
            running = r is not None
            if t:
                terminated = (
                    int(t.get("exitCode") or 0),
                    t.get("reason") or "",
                    t.get("message") or "",
                    CONTAINER,
                )
        return cls(
            name=meta.get("name") or "",
            uid=meta.get("uid") or "",
            session_id=ann.get(SESSION_ANNOTATION) or labels.get(SESSION_LABEL) or "",
            phase=st.get("phase") or "Pending",
            deleting=bool(meta.get("deletionTimestamp")),
            node=spec.get("nodeName"),
            reason=st.get("reason"),
            message=st.get("message"),
            unschedulable=unsched,
            unschedulable_since=since,
            waiting=waiting,
            running=running,
            terminated=terminated,
        )

    @property
    def ended(self) -> bool:
        return self.phase in TERMINAL or (
            self.terminated is not None and self.terminated[3] == CONTAINER
        )


@dataclass(slots=True)
class Ended:
    code: int | None
    reason: str
    remove: bool = True  # delete the pod now that its result is known


def _epoch(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def describe_exit(code: int, reason: str = "", message: str = "", container: str = "") -> str:
    """Why a container ended, in words (with its last log line on errors)."""
    what = (
        "the session's container"
        if container in ("", CONTAINER)
        else f"init container '{container}'"
    )
    if code == 0:
        return f"{what} exited normally (exit code 0)"
    if reason == "OOMKilled":
        text = f"{what} ran out of memory (OOMKilled: the profile's memory limit was reached)"
    elif code == 3 and container in ("", CONTAINER):
        text = "the agent lost the hub and gave up re-dialling (exit code 3)"
    elif code == 137:
        text = f"{what} was killed (SIGKILL, exit code 137)"
    elif code == 143:
        text = f"{what} was stopped by SIGTERM (exit code 143)"
    else:
        text = f"{what} exited with code {code}"
        if reason and reason not in ("Error", "Completed"):
            text += f" ({reason})"
    last = _last_line(message)
    return f"{text}; last log line: {last}" if last else text


def progress_line(reason: str, message: str) -> str:
    label = _PROGRESS_LABELS.get(reason, reason)
    if reason in ("Created", "Started"):
        return label  # "Created container session": nothing to add
    message = " ".join(message.split())[:300]
    return f"{label}: {message}" if message else label


def _api_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "")
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except (TypeError, ValueError):
        pass
    return f"{exc.status} {exc.reason}".strip()


def _read_json(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call an API function and decode its raw JSON answer (runs in a pool thread)."""
    resp = fn(*args, _preload_content=False, **kwargs)
    try:
        data = resp.data
        return json.loads(data) if data else None
    finally:
        resp.release_conn()


def load_client_configuration(
    credentials: str = "auto", context: str | None = None
) -> k8s.Configuration:
    """The client's configuration: in-cluster (service account) or a kubeconfig
    (``KUBECONFIG``, else ``~/.kube/config``). ``auto`` = in-cluster inside a pod."""
    import os

    cfg = k8s.Configuration()
    in_cluster = credentials == "in-cluster" or (
        credentials == "auto" and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    )
    try:
        if in_cluster:
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(context=context, client_configuration=cfg)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError, TypeError, ValueError) as exc:
        where = "the in-cluster service account" if in_cluster else "KUBECONFIG/~/.kube/config"
        raise SpawnError(f"cannot load Kubernetes credentials from {where}: {exc}") from exc
    return cfg


class _Watcher:
    """One list-then-watch loop in a thread: events go to ``on_event`` on the event loop,
    a full list to ``on_list``. Reconnects from the last resourceVersion; lists again after
    410 Gone. Every request is bounded (server timeout + client read timeout)."""

    def __init__(
        self,
        kind: str,
        list_fn: Callable[..., Any],
        namespace: str,
        selectors: dict[str, str],
        loop: asyncio.AbstractEventLoop,
        on_list: Callable[[list[dict[str, Any]], float], None],
        on_event: Callable[[str, dict[str, Any]], None],
        timeout_s: int,
    ) -> None:
        self.kind = kind
        self.list_fn = list_fn
        self.namespace = namespace
        self.selectors = selectors
        self.loop = loop
        self.on_list = on_list
        self.on_event = on_event
        self.timeout_s = timeout_s
        self.rv: str | None = None
        self.stats: Counter[str] = Counter()
        self.connected = False
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._resp: Any = None
        self._thread = threading.Thread(target=self._run, name=f"k8s-watch-{kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            try:
                resp.shutdown()  # unblocks the read in the watch thread
            except Exception:  # noqa: BLE001 - best effort
                pass

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _deliver(self, fn: Callable[..., None], *args: Any) -> bool:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
            return True
        except RuntimeError:  # the loop is closed: the hub is gone
            self._stop.set()
            return False

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                if self.rv is None:
                    self._list()
                self._watch()
                backoff = 0.2
                continue
            except ApiException as exc:
                self.connected = False
                if exc.status == 410:
                    self.stats["gone"] += 1
                    self.rv = None
                    continue
                self.stats["errors"] += 1
                self.last_error = f"{exc.status}: {_api_message(exc)}"
            except Exception as exc:  # noqa: BLE001 - dropped connection, timeout, bad JSON
                self.connected = False
                if self._stop.is_set():
                    break
                self.stats["reconnects"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            log.info("watch of %s interrupted (%s); reconnecting", self.kind, self.last_error)
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, 10.0)
        self.connected = False

    def _list(self) -> None:
        started = time.monotonic()
        body = _read_json(
            self.list_fn, self.namespace, **self.selectors, _request_timeout=(10, 120)
        )
        self.stats["lists"] += 1
        self.rv = str((body.get("metadata") or {}).get("resourceVersion") or "") or None
        self._deliver(self.on_list, list(body.get("items") or []), started)

    def _watch(self) -> None:
        resp = self.list_fn(
            self.namespace,
            **self.selectors,
            watch=True,
            resource_version=self.rv,
            allow_watch_bookmarks=True,
            timeout_seconds=self.timeout_s,
            _preload_content=False,
            _request_timeout=(10, self.timeout_s + 30),
        )
        self._resp = resp
        self.stats["watches"] += 1
        self.connected = True
        try:
            for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    return
                if not line:
                    continue
                ev = json.loads(line)
                typ = ev.get("type")
                obj = ev.get("object") or {}
                if typ == "ERROR":
                    if obj.get("code") == 410:
                        self.stats["gone"] += 1
                        self.rv = None  # too old: list again
                        return
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    self.rv = str(rv)
                if typ == "BOOKMARK":
                    continue
                self.stats["events"] += 1
                if not self._deliver(self.on_event, typ, obj):
                    return
        finally:
            self._resp = None
            self.connected = False
            try:
                resp.release_conn()
            except Exception:  # noqa: BLE001
                pass

    def describe(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "resource_version": self.rv,
            **{
                k: self.stats.get(k, 0)
                for k in ("lists", "watches", "events", "reconnects", "gone", "errors")
            },
            "last_error": self.last_error,
        }


class KubernetesSpawner:
    name = "kubernetes"

    def __init__(
        self,
        *,
        namespace: str,
        pod_config: PodConfig,
        profiles: list[KubernetesProfile] | None = None,
        configuration: k8s.Configuration | None = None,
        credentials: str = "auto",
        context: str | None = None,
        user_volume_size: str | None = None,
        user_volume_storage_class: str | None = None,
        start_failure_grace_s: float = 60,
        start_timeout_s: float = 600,
        watch_timeout_s: int = 300,
        metrics_interval_s: float = 30,
        sync_timeout_s: float = 30,
        api_threads: int = 8,
    ) -> None:
        self.namespace = namespace
        self.pod_config = pod_config
        self._profiles = list(profiles or []) or [default_profile()]
        marked = [p for p in self._profiles if p.default]
        self.default_profile = marked[0] if marked else self._profiles[0]
        self.credentials = credentials
        if configuration is None:
            configuration = load_client_configuration(credentials, context)
        configuration.connection_pool_maxsize = max(
            configuration.connection_pool_maxsize or 0, api_threads + 4
        )
        self.configuration = configuration
        self.api_client = k8s.ApiClient(configuration)
        self.core = k8s.CoreV1Api(self.api_client)
        self.custom = k8s.CustomObjectsApi(self.api_client)
        self.user_volume_size = user_volume_size
        self.user_volume_storage_class = user_volume_storage_class
        self.start_failure_grace_s = start_failure_grace_s
        self.start_timeout_s = start_timeout_s
        self.watch_timeout_s = watch_timeout_s
        self.metrics_interval_s = metrics_interval_s
        self.sync_timeout_s = sync_timeout_s
        self.calls: Counter[str] = Counter()  # API requests this spawner made, by verb
        self._pool = ThreadPoolExecutor(max_workers=api_threads, thread_name_prefix="k8s-api")
        # --- the cache (touched on the event loop only)
        self._pods: dict[str, PodView] = {}
        self._touched: dict[str, float] = {}  # pod -> monotonic time of the last update
        self._gone: dict[str, Ended] = {}  # deleted pods' final results, until read
        self._deleting: set[str] = set()  # pods the hub itself deletes
        self._changed: dict[str, asyncio.Event] = {}
        self._progress: dict[str, Callable[[str], Awaitable[None]]] = {}
        self._seen_events: dict[str, set[tuple[str, int]]] = {}
        self._warning: dict[str, str] = {}  # the last Warning event of a pod
        self._memory: dict[str, int] = {}
        self._pvcs: set[str] = set()
        self.metrics_status = "not started"
        # --- background machinery
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchers: list[_Watcher] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._pods_synced: asyncio.Event | None = None
        self._progress_q: asyncio.Queue[tuple[Callable[[str], Awaitable[None]], str]] | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> KubernetesSpawner:
        if not settings.kubernetes_hub_url:
            raise SpawnError("spawner = 'kubernetes' needs kubernetes_hub_url")
        pod_config = PodConfig(
            namespace=settings.kubernetes_namespace,
            image=settings.kubernetes_image,
            hub_url=settings.kubernetes_hub_url,
            service_account=settings.kubernetes_service_account,
            max_age_s=settings.kubernetes_max_session_age_s,
            image_pull_secrets=tuple(settings.kubernetes_image_pull_secrets),
            user_volume=settings.kubernetes_user_volume_size is not None,
            user_volume_access_mode=settings.kubernetes_user_volume_access_mode,
            default_uid=settings.kubernetes_session_uid,
        )
        kw: dict[str, Any] = {
            "namespace": settings.kubernetes_namespace,
            "pod_config": pod_config,
            "profiles": settings.kubernetes_profiles,
            "credentials": settings.kubernetes_credentials,
            "context": settings.kubernetes_context,
            "user_volume_size": settings.kubernetes_user_volume_size,
            "user_volume_storage_class": settings.kubernetes_user_volume_storage_class,
            "start_failure_grace_s": settings.kubernetes_start_failure_grace_s,
            "start_timeout_s": settings.kubernetes_start_timeout_s,
        }
        kw.update(overrides)
        return cls(**kw)

    # ------------------------------------------------------------------ profiles
    def profiles(self, user: str, is_admin: bool) -> list[dict[str, Any]]:
        return [
            p.public(p is self.default_profile) for p in self._profiles if p.allows(user, is_admin)
        ]

    def profile(self, name: str | None) -> KubernetesProfile:
        if name is None:
            return self.default_profile
        for p in self._profiles:
            if p.name == name:
                return p
        raise SpawnError(f"there is no profile '{name}'")

    # ------------------------------------------------------------------ API calls
    async def _call(self, verb: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API request in this spawner's thread pool; the decoded JSON answer."""
        self.calls[verb] += 1
        kwargs.setdefault("_request_timeout", (10, 60))
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._pool, functools.partial(_read_json, fn, *args, **kwargs)
            )
        except (ApiException, SpawnError):
            raise
        except Exception as exc:  # noqa: BLE001 - unreachable, TLS, timeout, bad answer
            raise SpawnError(
                f"the Kubernetes API at {self.configuration.host} did not answer: {exc}"
            ) from exc

    async def _delete_pod(self, name: str, grace: int) -> None:
        self._deleting.add(name)
        try:
            await self._call(
                "delete",
                self.core.delete_namespaced_pod,
                name,
                self.namespace,
                grace_period_seconds=max(0, int(grace)),
                propagation_policy="Background",
            )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("could not delete pod %s: %s", name, _api_message(exc))
        except SpawnError as exc:
            log.warning("could not delete pod %s: %s", name, exc)

    # ------------------------------------------------------------------ watches
    async def _ensure_started(self) -> None:
        if self._closed:
            raise SpawnError("the Kubernetes spawner is shut down")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._pods_synced = asyncio.Event()
            self._progress_q = asyncio.Queue()
            self._watchers = [
                _Watcher(
                    "pods",
                    self.core.list_namespaced_pod,
                    self.namespace,
                    {"label_selector": SESSION_SELECTOR},
                    self._loop,
                    self._on_pods_listed,
                    self._on_pod_event,
                    self.watch_timeout_s,
                ),
                _Watcher(
                    "events",
                    self.core.list_namespaced_event,
                    self.namespace,
                    {"field_selector": "involvedObject.kind=Pod"},
                    self._loop,
                    self._on_events_listed,
                    self._on_event,
                    self.watch_timeout_s,
                ),
            ]
            for w in self._watchers:
                w.start()
            self._tasks = [
                asyncio.ensure_future(self._progress_loop()),
                asyncio.ensure_future(self._metrics_loop()),
            ]
        assert self._pods_synced is not None
        if self._pods_synced.is_set():
            return
        try:
            await asyncio.wait_for(self._pods_synced.wait(), self.sync_timeout_s)
        except TimeoutError:
            why = self._watchers[0].last_error or "no answer"
            raise SpawnError(
                f"cannot list the session pods in namespace '{self.namespace}' at "
                f"{self.configuration.host}: {why}"
            ) from None

    def _notify(self, name: str) -> None:
        ev = self._changed.pop(name, None)
        if ev is not None:
            ev.set()

    def _changed_event(self, name: str) -> asyncio.Event:
        ev = self._changed.get(name)
        if ev is None:
            ev = self._changed[name] = asyncio.Event()
        return ev

    def _put(self, view: PodView) -> None:
        self._pods[view.name] = view
        self._touched[view.name] = time.monotonic()
        self._notify(view.name)

    def _remove(self, view: PodView, why: str) -> None:
        self._pods.pop(view.name, None)
        self._touched.pop(view.name, None)
        self._gone[view.name] = self._final(view, why)
        self._seen_events.pop(view.name, None)
        self._warning.pop(view.name, None)
        while len(self._gone) > 10_000:  # results nobody waits for (orphans)
            self._gone.pop(next(iter(self._gone)))
        self._memory.pop(view.name, None)
        self._notify(view.name)

    def _on_pods_listed(self, items: list[dict[str, Any]], started: float) -> None:
        seen = set()
        for obj in items:
            view = PodView.parse(obj)
            seen.add(view.name)
            self._put(view)
        for name, view in list(self._pods.items()):
            if name not in seen and self._touched.get(name, 0.0) < started:
                self._remove(view, "noticed when the hub's watch listed the pods again")
        assert self._pods_synced is not None
        self._pods_synced.set()

    def _on_pod_event(self, typ: str, obj: dict[str, Any]) -> None:
        view = PodView.parse(obj)
        if not view.name:
            return
        if typ == "DELETED":
            self._remove(view, "")
        else:
            self._put(view)

    def _on_events_listed(self, items: list[dict[str, Any]], started: float) -> None:
        for obj in items:
            self._on_event("ADDED", obj)

    def _on_event(self, typ: str, obj: dict[str, Any]) -> None:
        if typ == "DELETED":
            return
        inv = obj.get("involvedObject") or {}
        name = inv.get("name") or ""
        if inv.get("kind") != "Pod" or (name not in self._pods and name not in self._progress):
            return
        meta = obj.get("metadata") or {}
        count = int(obj.get("count") or (obj.get("series") or {}).get("count") or 1)
        key = (str(meta.get("uid") or meta.get("name") or ""), count)
        seen = self._seen_events.setdefault(name, set())
        if key in seen:
            return
        seen.add(key)
        reason, message = obj.get("reason") or "", obj.get("message") or ""
        if obj.get("type") == "Warning":
            self._warning[name] = f"{reason}: {' '.join(message.split())[:300]}"
        cb = self._progress.get(name)
        if cb is not None and self._progress_q is not None:
            self._progress_q.put_nowait((cb, progress_line(reason, message)))
            if reason == "Started" and CONTAINER in (inv.get("fieldPath") or CONTAINER):
                self._progress.pop(name, None)  # the rest is the agent's business

    async def _progress_loop(self) -> None:
        """Progress lines to the sessions' clients, in order, none allowed to block."""
        assert self._progress_q is not None
        while True:
            cb, line = await self._progress_q.get()
            try:
                await asyncio.wait_for(cb(line), 10)
            except Exception:  # noqa: BLE001 - a client that went away
                log.debug("progress callback failed", exc_info=True)

    async def _metrics_loop(self) -> None:
        """Memory of every session pod from metrics-server: one list call per interval for
        all pods (not one per session). Stops if the cluster has no metrics API."""
        while not self._closed:
            await asyncio.sleep(
                self.metrics_interval_s if self._pods else min(5, self.metrics_interval_s)
            )
            if not self._pods:
                continue
            try:
                body = await self._call(
                    "list",
                    self.custom.list_namespaced_custom_object,
                    "metrics.k8s.io",
                    "v1beta1",
                    self.namespace,
                    "pods",
                    label_selector=SESSION_SELECTOR,
                )
            except ApiException as exc:
                if exc.status in (401, 403, 404, 503):
                    self.metrics_status = f"unavailable ({exc.status}: {_api_message(exc)})"
                    return
                self.metrics_status = f"error: {_api_message(exc)}"
                continue
            except Exception as exc:  # noqa: BLE001 - connection trouble; try next time
                self.metrics_status = f"error: {exc}"
                continue
            memory: dict[str, int] = {}
            for item in (body or {}).get("items") or ():
                total = 0
                for c in item.get("containers") or ():
                    try:
                        total += int(parse_quantity((c.get("usage") or {}).get("memory") or "0"))
                    except ValueError:
                        continue
                memory[(item.get("metadata") or {}).get("name") or ""] = total
            self._memory = memory
            self.metrics_status = f"ok ({len(memory)} pods)"

    # ------------------------------------------------------------------ outcomes
    def _stage(self, view: PodView) -> str:
        """Where a pod that did not get to run was in its start."""
        if view.unschedulable:
            return f"waiting for a node ({view.unschedulable})"
        if view.waiting and view.waiting[0] not in ("ContainerCreating", "PodInitializing", ""):
            return f"starting ({view.waiting[0]}: {view.waiting[1]})".replace(": )", ")")
        if view.running:
            return "running"
        warn = self._warning.get(view.name)
        if warn:
            return f"starting (last warning: {warn})"
        if not view.node:
            return "waiting to be scheduled"
        return "starting (pulling the image, preparing volumes)"

    def _final(self, view: PodView, why: str) -> Ended:
        """The result of a pod that has been deleted (``why``: how we learnt it)."""
        if view.phase in TERMINAL or view.ended:
            return self._ended(view)
        if view.name in self._deleting:
            return Ended(None, f"the pod was deleted by the hub while {self._stage(view)}", False)
        extra = f" ({why})" if why else ""
        return Ended(
            None,
            f"the session's pod was deleted outside the hub while {self._stage(view)}{extra}",
            False,
        )

    def _ended(self, view: PodView) -> Ended:
        if view.reason == "DeadlineExceeded":
            age = self.pod_config.max_age_s
            return Ended(
                None,
                f"the session reached its maximum age of {age} s (kubernetes_max_session_age_s)",
            )
        if view.reason == "Evicted":
            return Ended(
                None, f"the session's pod was evicted: {view.message or 'no reason given'}"
            )
        if view.terminated is not None:
            code, reason, message, container = view.terminated
            return Ended(code, describe_exit(code, reason, message, container))
        if view.phase == "Succeeded":
            return Ended(0, "the session's pod succeeded")
        return Ended(
            None, f"the session's pod failed: {view.reason or ''} {view.message or ''}".strip()
        )

    def _outcome(self, name: str) -> Ended | None:
        view = self._pods.get(name)
        if view is None:
            gone = self._gone.get(name)
            if gone is not None:
                return Ended(gone.code, gone.reason, False)
            return Ended(None, "the session's pod no longer exists", False)
        if view.ended:
            return self._ended(view)
        if view.phase != "Pending" or view.deleting:
            return None
        if view.waiting is not None:
            reason, message, container = view.waiting
            if reason in PULL_FAILURES:
                return Ended(
                    None,
                    f"the session image could not be pulled ({reason}): {message}".rstrip(": "),
                )
            if reason in CREATE_FAILURES:
                return Ended(
                    None,
                    f"the session's container '{container}' could not be created ({reason}): "
                    f"{message}".rstrip(": "),
                )
        if view.unschedulable is not None:
            since = view.unschedulable_since or time.time()
            if time.time() - since >= self.start_failure_grace_s:
                return Ended(
                    None,
                    "no node can run the session (unschedulable for "
                    f"{self.start_failure_grace_s:g} s): {view.unschedulable}",
                )
        return None

    def _recheck_in(self, name: str) -> float:
        view = self._pods.get(name)
        if view is not None and view.unschedulable is not None and view.phase == "Pending":
            since = view.unschedulable_since or time.time()
            return max(0.05, since + self.start_failure_grace_s - time.time() + 0.05)
        return 300.0

    def _forget(self, name: str) -> None:
        for d in (self._gone, self._progress, self._seen_events, self._warning, self._memory):
            d.pop(name, None)
        self._deleting.discard(name)

    # ------------------------------------------------------------------ contract
    async def start(self, spec: SessionSpec) -> dict[str, Any]:
        await self._ensure_started()
        profile = self.profile(spec.profile)
        name = pod_name(spec.session_id)
        if spec.progress is not None:
            self._progress[name] = spec.progress
        try:
            pvc = await self._ensure_user_volume(spec) if self.user_volume_size else None
            try:
                pod = build_session_pod(spec, profile, self.pod_config)
                uid, gid = session_identity(spec, self.pod_config.default_uid)
            except ValueError as exc:
                raise SpawnError(str(exc)) from exc
            secret = build_session_secret(spec, self.namespace)
            try:
                await self._call(
                    "create", self.core.create_namespaced_secret, self.namespace, secret
                )
            except ApiException as exc:
                raise SpawnError(
                    f"the session's Secret could not be created: {_api_message(exc)}"
                ) from exc
            try:
                created = await self._call(
                    "create", self.core.create_namespaced_pod, self.namespace, pod
                )
            except (ApiException, SpawnError) as exc:
                await self._delete_secret(name)
                why = _api_message(exc) if isinstance(exc, ApiException) else str(exc)
                raise SpawnError(f"the session's pod could not be created: {why}") from exc
            view = PodView.parse(created)
            if name not in self._pods:  # the watch may have been quicker
                self._put(view)
            try:
                await self._call(
                    "patch",
                    self.core.patch_namespaced_secret,
                    name,
                    self.namespace,
                    {"metadata": {"ownerReferences": [owner_reference(created)]}},
                    _content_type="application/merge-patch+json",
                )
            except (ApiException, SpawnError) as exc:  # reconcile removes it if it stays
                log.warning("could not make pod %s own its Secret: %s", name, exc)
        except BaseException:
            self._progress.pop(name, None)
            raise
        log.info("created pod %s (profile %s) in %s", name, profile.name, self.namespace)
        return {
            "pod": name,
            "namespace": self.namespace,
            "uid": view.uid,
            "profile": profile.name,
            "image": profile.image or self.pod_config.image,
            "user_volume": pvc,
            # The session's identity, which its Spark driver and executors take too.
            "run_as_user": uid,
            "run_as_group": gid,
        }

    async def _delete_secret(self, name: str) -> None:
        try:
            await self._call("delete", self.core.delete_namespaced_secret, name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("could not delete Secret %s: %s", name, _api_message(exc))
        except SpawnError as exc:
            log.warning("could not delete Secret %s: %s", name, exc)

    async def _ensure_user_volume(self, spec: SessionSpec) -> str:
        """The user's package volume, created on first use (one GET per user and hub)."""
        name = pvc_name(spec.user)
        if name in self._pvcs:
            return name
        try:
            await self._call(
                "get", self.core.read_namespaced_persistent_volume_claim, name, self.namespace
            )
        except ApiException as exc:
            if exc.status != 404:
                raise SpawnError(
                    f"cannot read the package volume {name}: {_api_message(exc)}"
                ) from exc
            assert self.user_volume_size is not None
            if spec.progress is not None:
                await spec.progress(
                    f"Creating your package volume ({self.user_volume_size}); installed R and "
                    "Python packages are kept on it"
                )
            body = build_user_pvc(
                spec.user,
                self.namespace,
                self.user_volume_size,
                self.user_volume_storage_class,
                self.pod_config.user_volume_access_mode,
            )
            try:
                await self._call(
                    "create",
                    self.core.create_namespaced_persistent_volume_claim,
                    self.namespace,
                    body,
                )
            except ApiException as exc2:
                if exc2.status != 409:  # 409: a concurrent start created it
                    raise SpawnError(
                        f"the package volume could not be created: {_api_message(exc2)}"
                    ) from exc2
        self._pvcs.add(name)
        return name

    async def poll(self, state: dict[str, Any]) -> bool:
        await self._ensure_started()
        view = self._pods.get(str(state.get("pod") or ""))
        if view is None or (state.get("uid") and view.uid != state["uid"]):
            return False
        return not view.ended

    async def wait(self, state: dict[str, Any]) -> tuple[int | None, str]:
        await self._ensure_started()
        name = str(state.get("pod") or "")
        while True:
            changed = self._changed_event(name)
            ended = self._outcome(name)
            if ended is not None:
                view = self._pods.get(name)
                if ended.remove and view is not None and not view.deleting:
                    await self._delete_pod(name, grace=0)
                self._forget(name)
                return ended.code, ended.reason
            try:
                await asyncio.wait_for(changed.wait(), self._recheck_in(name))
            except TimeoutError:
                pass

    async def stop(self, state: dict[str, Any], grace_s: float) -> int | None:
        """Delete the pod with a grace period: SIGTERM (the agent exits 0), SIGKILL after."""
        await self._ensure_started()
        name = str(state.get("pod") or "")
        self._deleting.add(name)
        view = self._pods.get(name)
        if view is None:
            gone = self._gone.get(name)
            return gone.code if gone else None
        grace = max(0, math.ceil(grace_s))
        await self._delete_pod(name, grace=0 if view.ended else grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace + 30  # the kubelet reports a moment after SIGKILL
        forced = False
        while True:
            changed = self._changed_event(name)
            view = self._pods.get(name)
            if view is None or view.ended:
                break
            left = deadline - loop.time()
            if left <= 0:
                if forced:
                    break
                log.warning("pod %s did not end in %s s; deleting it at once", name, grace + 30)
                await self._delete_pod(name, grace=0)
                forced = True
                deadline = loop.time() + 10
                continue
            try:
                await asyncio.wait_for(changed.wait(), left)
            except TimeoutError:
                pass
        if view is not None and view.terminated is not None:
            return view.terminated[0]
        gone = self._gone.get(name)
        return gone.code if gone else None

    def memory(self, state: dict[str, Any]) -> int | None:
        """From metrics-server (refreshed for all pods at once), if the cluster has it."""
        return self._memory.get(str(state.get("pod") or ""))

    async def reconcile(self, known_session_ids: set[str]) -> dict[str, int]:
        """Delete session pods (and ownerless session Secrets) of sessions the hub does not
        know as live: left by a crash, or ended while the hub was down."""
        await self._ensure_started()
        orphans = [v.name for v in self._pods.values() if v.session_id not in known_session_ids]
        sem = asyncio.Semaphore(8)

        async def delete(name: str) -> None:
            async with sem:
                await self._delete_pod(name, grace=5)

        await asyncio.gather(*(delete(n) for n in orphans))
        secrets = 0
        try:
            body = await self._call(
                "list",
                self.core.list_namespaced_secret,
                self.namespace,
                label_selector=SESSION_SELECTOR,
            )
        except (ApiException, SpawnError) as exc:
            log.warning("could not list session Secrets: %s", exc)
            body = None
        for item in (body or {}).get("items") or ():
            meta = item.get("metadata") or {}
            sid = (meta.get("annotations") or {}).get(SESSION_ANNOTATION) or (
                meta.get("labels") or {}
            ).get(SESSION_LABEL)
            if sid in known_session_ids or meta.get("ownerReferences"):
                continue  # owned ones go with their pod
            await self._delete_secret(meta.get("name") or "")
            secrets += 1
        if orphans or secrets:
            log.info("removed %d orphaned session pods and %d Secrets", len(orphans), secrets)
        return {"pods": len(orphans), "secrets": secrets}

    async def check(self) -> dict[str, Any]:
        """Can this hub reach the API and list pods in its namespace? (for doctor)"""
        try:
            await self._call(
                "list",
                self.core.list_namespaced_pod,
                self.namespace,
                label_selector=SESSION_SELECTOR,
                limit=1,
            )
        except ApiException as exc:
            return {"ok": False, "detail": f"listing pods failed: {_api_message(exc)}"}
        except Exception as exc:  # noqa: BLE001 - unreachable, TLS …
            return {"ok": False, "detail": f"cannot reach {self.configuration.host}: {exc}"}
        return {
            "ok": True,
            "detail": f"can list pods in namespace '{self.namespace}' at {self.configuration.host}",
        }

    def describe(self) -> dict[str, Any]:
        cfg = self.pod_config
        return {
            "spawner": self.name,
            "sandbox": "kubernetes pod",
            "sandbox_reason": (
                "non-root under each user's own uid (users without one: uid "
                f"{cfg.default_uid}), read-only root filesystem, no privilege escalation, all "
                "capabilities dropped, seccomp RuntimeDefault, no service account token; the "
                "network is limited by the NetworkPolicies of the manifests"
            ),
            "api": self.configuration.host,
            "credentials": self.credentials,
            "namespace": self.namespace,
            "image": cfg.image,
            "hub_url": cfg.hub_url,
            "service_account": cfg.service_account,
            "profiles": [p.name for p in self._profiles],
            "default_profile": self.default_profile.name,
            "user_volume": (
                {
                    "size": self.user_volume_size,
                    "storage_class": self.user_volume_storage_class,
                    "access_mode": cfg.user_volume_access_mode,
                }
                if self.user_volume_size
                else None
            ),
            "max_session_age_s": cfg.max_age_s,
            "start_timeout_s": self.start_timeout_s,
            "start_failure_grace_s": self.start_failure_grace_s,
            "cached_pods": len(self._pods),
            "watches": {w.kind: w.describe() for w in self._watchers},
            "api_calls": dict(self.calls),
            "metrics": self.metrics_status,
        }

    async def close(self) -> None:
        """Stop the watches and the thread pool (sessions keep running)."""
        self._closed = True
        for w in self._watchers:
            w.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for w in self._watchers:
            await asyncio.to_thread(w.join, 5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        try:
            self.api_client.close()  # type: ignore[no-untyped-call]
        except Exception:  # noqa: BLE001
            pass
