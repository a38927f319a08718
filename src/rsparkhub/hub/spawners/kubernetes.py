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
* ``stop`` deletes the pod with a grace period (SIGTERM, then SIGKILL after it): the hub's
  fallback. A stop through the hub first asks the agent over its link (sessions/lifecycle),
  and the pod ends Succeeded by itself, its exit code read before the pod is deleted.
* After a hub restart ``poll`` answers from the first list (adoption); ``reconcile``
  deletes session pods and Secrets whose session the hub does not know.

The parts, one job each: ``k8s_client`` (credentials, the API client and the spawner's own
thread pool for blocking calls), ``k8s_watch`` (the list-then-watch threads), ``k8s_cache``
(what the watches saw; progress lines), ``k8s_status`` (what a pod's status means, in
words), ``k8s_objects`` (the objects it creates) and ``k8s_profiles`` (the profiles users
pick). This module is the spawner contract on top of them.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from rsparkhub.hub.spawners.base import SessionSpec, SpawnError
from rsparkhub.hub.spawners.k8s_cache import PodCache
from rsparkhub.hub.spawners.k8s_client import (
    KubernetesApi,
    api_message,
    load_client_configuration,
)
from rsparkhub.hub.spawners.k8s_objects import (
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
from rsparkhub.hub.spawners.k8s_status import (
    STATUS_UNKNOWN,
    PodView,
    describe_exit,
    progress_line,
)
from rsparkhub.hub.spawners.k8s_watch import Watcher

if TYPE_CHECKING:
    from rsparkhub.config import Settings

__all__ = [
    "KubernetesSpawner",
    "default_profile",
    "describe_exit",
    "load_client_configuration",
    "progress_line",
]

log = logging.getLogger("rsparkhub.k8s")


def default_profile() -> KubernetesProfile:
    return KubernetesProfile(
        name="default",
        display_name="Default",
        description="The standard session image with the default resources.",
        default=True,
    )


class KubernetesSpawner:
    """Sessions as pods in ``namespace`` (see the module docstring)."""

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
        self.api = KubernetesApi(configuration, api_threads)
        self.configuration = self.api.configuration
        self.api_client = self.api.client
        self.core = self.api.core
        self.custom = self.api.custom
        self.user_volume_size = user_volume_size
        self.user_volume_storage_class = user_volume_storage_class
        self.start_failure_grace_s = start_failure_grace_s
        self.start_timeout_s = start_timeout_s
        self.watch_timeout_s = watch_timeout_s
        self.metrics_interval_s = metrics_interval_s
        self.sync_timeout_s = sync_timeout_s
        self.calls: Counter[str] = self.api.calls  # API requests this spawner made, by verb
        self._cache = PodCache(pod_config.max_age_s)  # touched on the event loop only
        self._pvcs: set[str] = set()
        self.metrics_status = "not started"
        # --- background machinery
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchers: list[Watcher] = []
        self._tasks: list[asyncio.Task[None]] = []
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
            disk_mb=settings.session_disk_mb,
            tmp_mb=settings.session_tmp_mb,
            environments_claim=settings.kubernetes_environments_claim,
            environments_root=str(settings.data_dir / "environments"),
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
        return await self.api.call(verb, fn, *args, **kwargs)

    async def _delete_pod(self, name: str, grace: int) -> None:
        self._cache.deleting.add(name)
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
                log.warning("could not delete pod %s: %s", name, api_message(exc))
        except SpawnError as exc:
            log.warning("could not delete pod %s: %s", name, exc)

    # ------------------------------------------------------------------ watches
    async def _ensure_started(self) -> None:
        if self._closed:
            raise SpawnError("the Kubernetes spawner is shut down")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._watchers = [
                Watcher(
                    "pods",
                    self.core.list_namespaced_pod,
                    self.namespace,
                    {"label_selector": SESSION_SELECTOR},
                    self._loop,
                    self._cache.on_pods_listed,
                    self._cache.on_pod_event,
                    self.watch_timeout_s,
                ),
                Watcher(
                    "events",
                    self.core.list_namespaced_event,
                    self.namespace,
                    {"field_selector": "involvedObject.kind=Pod"},
                    self._loop,
                    self._cache.on_events_listed,
                    self._cache.on_event,
                    self.watch_timeout_s,
                ),
            ]
            for w in self._watchers:
                w.start()
            self._tasks = [
                asyncio.ensure_future(self._cache.deliver_progress()),
                asyncio.ensure_future(self._metrics_loop()),
            ]
        if self._cache.synced.is_set():
            return
        try:
            await asyncio.wait_for(self._cache.synced.wait(), self.sync_timeout_s)
        except TimeoutError:
            why = self._watchers[0].last_error or "no answer"
            raise SpawnError(
                f"cannot list the session pods in namespace '{self.namespace}' at "
                f"{self.configuration.host}: {why}"
            ) from None

    async def _metrics_loop(self) -> None:
        """Memory of every session pod from metrics-server: one list call per interval for
        all pods (not one per session). Stops if the cluster has no metrics API."""
        while not self._closed:
            await asyncio.sleep(
                self.metrics_interval_s if self._cache.pods else min(5, self.metrics_interval_s)
            )
            if not self._cache.pods:
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
                    self.metrics_status = f"unavailable ({exc.status}: {api_message(exc)})"
                    return
                self.metrics_status = f"error: {api_message(exc)}"
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
            self._cache.memory = memory
            self.metrics_status = f"ok ({len(memory)} pods)"

    # ------------------------------------------------------------------ contract
    async def start(self, spec: SessionSpec) -> dict[str, Any]:
        await self._ensure_started()
        profile = self.profile(spec.profile)
        name = pod_name(spec.session_id)
        if spec.progress is not None:
            self._cache.follow_progress(name, spec.progress)
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
                    f"the session's Secret could not be created: {api_message(exc)}"
                ) from exc
            try:
                created = await self._call(
                    "create", self.core.create_namespaced_pod, self.namespace, pod
                )
            except (ApiException, SpawnError) as exc:
                await self._delete_secret(name)
                why = api_message(exc) if isinstance(exc, ApiException) else str(exc)
                raise SpawnError(f"the session's pod could not be created: {why}") from exc
            view = PodView.parse(created)
            if name not in self._cache.pods:  # the watch may have been quicker
                self._cache.put(view)
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
            self._cache.unfollow_progress(name)
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
                log.warning("could not delete Secret %s: %s", name, api_message(exc))
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
                    f"cannot read the package volume {name}: {api_message(exc)}"
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
                        f"the package volume could not be created: {api_message(exc2)}"
                    ) from exc2
        self._pvcs.add(name)
        return name

    async def poll(self, state: dict[str, Any]) -> bool:
        await self._ensure_started()
        view = self._cache.pods.get(str(state.get("pod") or ""))
        if view is None or (state.get("uid") and view.uid != state["uid"]):
            return False
        return not view.ended

    async def wait(self, state: dict[str, Any]) -> tuple[int | None, str]:
        await self._ensure_started()
        name = str(state.get("pod") or "")
        while True:
            changed = self._cache.changed(name)
            ended = self._cache.outcome(name, self.start_failure_grace_s)
            if ended is not None:
                view = self._cache.pods.get(name)
                if ended.remove and view is not None and not view.deleting:
                    await self._delete_pod(name, grace=0)
                self._cache.forget(name)
                return ended.code, ended.reason
            try:
                await asyncio.wait_for(
                    changed.wait(), self._cache.recheck_in(name, self.start_failure_grace_s)
                )
            except TimeoutError:
                pass

    async def stop(self, state: dict[str, Any], grace_s: float) -> int | None:
        """Delete the pod with a grace period: SIGTERM (the agent exits 0), SIGKILL after."""
        await self._ensure_started()
        name = str(state.get("pod") or "")
        self._cache.stopping.add(name)
        try:
            return await self._stop(name, grace_s)
        finally:
            self._cache.stopping.discard(name)

    async def _stop(self, name: str, grace_s: float) -> int | None:
        self._cache.deleting.add(name)
        view = self._cache.pods.get(name)
        if view is None:
            gone = self._cache.gone.get(name)
            return gone.code if gone else None
        grace = max(0, math.ceil(grace_s))
        await self._delete_pod(name, grace=0 if view.ended else grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace + 30  # the kubelet reports a moment after SIGKILL
        forced = False
        while True:
            changed = self._cache.changed(name)
            view = self._cache.pods.get(name)
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
            # 137 with ContainerStatusUnknown is the kubelet's placeholder, not an exit
            return None if view.terminated[1] == STATUS_UNKNOWN else view.terminated[0]
        gone = self._cache.gone.get(name)
        return gone.code if gone else None

    def memory(self, state: dict[str, Any]) -> int | None:
        """From metrics-server (refreshed for all pods at once), if the cluster has it."""
        return self._cache.memory.get(str(state.get("pod") or ""))

    async def reconcile(self, known_session_ids: set[str]) -> dict[str, int]:
        """Delete session pods (and ownerless session Secrets) of sessions the hub does not
        know as live: left by a crash, or ended while the hub was down."""
        await self._ensure_started()
        orphans = [
            v.name for v in self._cache.pods.values() if v.session_id not in known_session_ids
        ]
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
            return {"ok": False, "detail": f"listing pods failed: {api_message(exc)}"}
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
            "cached_pods": len(self._cache.pods),
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
        self.api.close()
