"""``spark = 'kubernetes'``: one Spark Connect driver per session, next to the Kubernetes
spawner's session pods (the objects: ``spark_k8s.py``).

Owns: which sessions have a driver, why one could not be made, and what users and doctor
are told about them. Must not: build or call the Kubernetes API itself (``spark_k8s``
does), or stop a session because its driver failed.

* The session manager calls :meth:`KubernetesSpark.session_started` once the session's pod
  exists (and for every session adopted after a hub restart) and
  :meth:`KubernetesSpark.session_ended` when it ends. The first creates the session's
  driver pod, Service and NetworkPolicy with the session pod as owner, under the session
  pod's uid (``spark_k8s.create_driver``, idempotent, so an adopted session keeps its
  driver); the second deletes them (``delete_driver``, idempotent).
* A driver that cannot be created does not stop the session: its clients are told why, the
  hub logs it, ``GET /api/spark`` repeats it, and Spark calls in the session fail to
  connect.
* The UI of a user's most recently started session with a driver is ``/spark-ui/<user>/``
  (the user and administrators).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from rsparkhub.config import Settings
from rsparkhub.hub import spark_k8s as sk
from rsparkhub.hub.spark import (
    Announce,
    Description,
    SessionOwner,
    SparkHub,
    SparkService,
    ui_bearer,
)

log = logging.getLogger("rsparkhub.spark")


@dataclass(eq=False)
class _Driver:
    """What the hub knows of one session's driver."""

    user: str
    order: int  # later sessions have larger numbers
    created: bool = False
    error: str | None = None  # why it could not be created
    removed: bool = False  # what a failed creation left was deleted again
    ended: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class KubernetesSpark(SparkService):
    """Per-session Spark drivers on Kubernetes."""

    mode = "kubernetes"

    def __init__(
        self, settings: Settings, hub: SparkHub | None = None, *, kubernetes_api: Any = None
    ) -> None:
        super().__init__(settings, hub)
        self.kubernetes_api = kubernetes_api  # the Kubernetes spawner's CoreV1Api
        self._k8s_cfg: sk.SparkK8sConfig | None = None
        self._drivers: dict[str, _Driver] = {}  # by hub session id, while the session lives
        self._driver_order = itertools.count()

    def _k8s(self) -> sk.SparkK8sConfig:
        if self._k8s_cfg is None:
            self._k8s_cfg = sk.SparkK8sConfig.from_settings(self.settings)
        return self._k8s_cfg

    async def _token(self, hub_session_id: str) -> str:
        """The session's Spark Connect token: the same for its environment and its driver,
        after a hub restart too (``connect_token``)."""
        return await asyncio.to_thread(self.connect_token, f"session:{hub_session_id}")

    async def _ui_key(self, hub_session_id: str) -> str:
        """The key of the session's driver's UI (``ui_key``, same subject as the token)."""
        return await asyncio.to_thread(self.ui_subject_key, f"session:{hub_session_id}")

    # ------------------------------------------------------------------ sessions
    async def session_env(self, s: SessionOwner) -> dict[str, str]:
        """The session's own driver (created by session_started), by its Service name,
        with the session's Connect token (the spawner keeps SPARK_REMOTE in the session's
        Secret)."""
        problem = await self._session_ids_ready()
        if problem is not None:
            return await self._without_spark(problem)
        sid = self.spark_session_id(s.hub_session_id)
        token = await self._token(s.hub_session_id)  # the secret exists (_session_ids_ready)
        remote = sk.remote_url(self._k8s(), s.user, s.hub_session_id, sid, token)
        return await self._with_preload(s, {"SPARK_REMOTE": remote})

    async def session_started(
        self, s: SessionOwner, spawner_state: Mapping[str, Any], announce: Announce | None = None
    ) -> None:
        """Create the session's driver pod, Service and NetworkPolicy, owned by the session
        pod (``spawner_state`` ``pod`` and ``uid``) so that Kubernetes deletes them with
        it, running as the session pod's uid and gid (``run_as_user``, ``run_as_group``);
        an existing driver is kept. Never raises: a failure is logged, told to the
        session's clients through ``announce`` and shown by ``GET /api/spark``; the session
        runs on without Spark."""
        hub_session_id, user, workspace_id = s.hub_session_id, s.user, s.workspace_id
        drv = self._drivers.get(hub_session_id)
        if drv is None:
            drv = _Driver(user=user, order=next(self._driver_order))
            self._drivers[hub_session_id] = drv
        async with drv.lock:
            if drv.ended or not self.is_live(hub_session_id):
                self._drivers.pop(hub_session_id, None)
                return
            cfg = self._k8s()
            name = sk.driver_name(hub_session_id)
            pod, uid = spawner_state.get("pod"), spawner_state.get("uid")
            owner = sk.Owner(name=str(pod), uid=str(uid)) if pod and uid else None
            try:
                if self.kubernetes_api is None:
                    raise sk.SparkDriverError(
                        "spark_driver_unavailable",
                        "The hub has no Kubernetes API client (spark = 'kubernetes' needs "
                        "spawner = 'kubernetes').",
                    )
                if owner is None:
                    log.warning("spark driver %s has no owner: the session state names no pod "
                                "uid; it is deleted when the session ends", name)  # fmt: skip
                token = await self._token(hub_session_id)
                await sk.create_driver(
                    self.kubernetes_api,
                    cfg,
                    user,
                    hub_session_id,
                    token=token,
                    ui_key=await self._ui_key(hub_session_id),
                    owner=owner,
                    workspace=workspace_id,
                    proxy_base=sk.ui_proxy_base(user, cfg.hub_base_path),
                    # The session pod's identity (None for sessions started before the
                    # spawner recorded it: the image's spark user).
                    uid=spawner_state.get("run_as_user"),
                    gid=spawner_state.get("run_as_group"),
                )
            except Exception as exc:  # noqa: BLE001 - the session runs on without Spark
                why = (
                    exc.message
                    if isinstance(exc, sk.SparkDriverError)
                    else f"the Kubernetes API did not answer ({type(exc).__name__}); see "
                    "the hub log"
                )
                drv.created, drv.error = False, why
                self._last_error = why
                log.warning("session %s: no Spark driver: %s", hub_session_id, why,
                            exc_info=not isinstance(exc, sk.SparkDriverError))  # fmt: skip
                if self.kubernetes_api is not None:  # half made (a pod without its Service)
                    drv.removed = await self._delete_driver(hub_session_id)
                if announce is not None:
                    await announce(
                        f"Spark is not available in this session: its Spark driver could not "
                        f"be created. {why} Spark calls from Python and R will fail to "
                        "connect; stop and start the session to try again."
                    )
                return
            drv.created, drv.error = True, None
            self._last_error = None
            if announce is not None:
                await announce(
                    f"Spark: driver {name} created; it is ready once its pod has started "
                    f"(the Spark UI is at /spark-ui/{quote(user, safe='')}/)"
                )

    async def session_ended(self, hub_session_id: str) -> None:
        """Delete the session's driver (idempotent; errors are logged — Kubernetes deletes
        it with the session pod anyway)."""
        drv = self._drivers.get(hub_session_id)
        if drv is None:
            return
        drv.ended = True
        async with drv.lock:  # a creation under way finishes first
            self._drivers.pop(hub_session_id, None)
            if self.kubernetes_api is not None and not drv.removed:
                await self._delete_driver(hub_session_id)

    async def _delete_driver(self, hub_session_id: str) -> bool:
        try:
            await sk.delete_driver(self.kubernetes_api, self._k8s().namespace, hub_session_id)
        except Exception as exc:  # noqa: BLE001 - owner references remove it later
            why = exc.message if isinstance(exc, sk.SparkDriverError) else repr(exc)
            log.warning("session %s: could not delete its Spark driver: %s", hub_session_id, why)
            return False
        return True

    def _live_driver(self, user: str) -> str | None:
        """The hub session id of ``user``'s most recently started session whose driver
        exists, if any."""
        best: tuple[int, str] | None = None
        for sid, drv in self._drivers.items():
            if drv.user == user and drv.created and not drv.ended:
                if best is None or drv.order > best[0]:
                    best = (drv.order, sid)
        return best[1] if best else None

    def _driver_failure(self, user: str) -> str | None:
        """Why the driver of ``user``'s latest live session could not be created, if so."""
        mine = [d for d in self._drivers.values() if d.user == user and not d.ended]
        latest = max(mine, key=lambda d: d.order, default=None)
        return latest.error if latest is not None else None

    # ------------------------------------------------------------------ state, UI
    async def state(self) -> str:
        return "running" if any(d.created for d in self._drivers.values()) else "down"

    def ui_target(self, owner: str) -> str | None:
        """The UI of ``owner``'s most recently started session's driver (its Service's
        port 4040, ``spark_kubernetes_ui_url``)."""
        sid = self._live_driver(owner)
        return sk.ui_url(self._k8s(), sid) if sid is not None else None

    async def ui_headers(self, owner: str) -> dict[str, str]:
        sid = self._live_driver(owner)
        return {"authorization": ui_bearer(await self._ui_key(sid))} if sid is not None else {}

    async def describe_for(self, user: str, is_admin: bool) -> Description:
        sid = self._live_driver(user)
        who = quote(user, safe="")
        detail = (
            "Each of your sessions gets its own Spark Connect driver on Kubernetes (executors "
            "as pods, added and removed with the work); it starts with the session and is "
            "deleted with it. "
        )
        if sid is not None:
            detail += (
                f"Your latest session's driver is {sk.driver_name(sid)}; its web UI is at "
                "ui_url (yours and administrators' only)."
            )
        elif (failure := self._driver_failure(user)) is not None:
            detail += f"Your latest session has no Spark driver: {failure}"
        else:
            detail += "You have no running session with a Spark driver right now."
        return {
            "mode": self.mode,
            "state": "running" if sid is not None else "down",
            "remote": (
                f"sc://{sk.service_host(self._k8s(), sid)}:{sk.CONNECT_PORT}/;user_id={who}"
                if sid is not None
                else None
            ),
            "database": None,
            "ui_url": f"/spark-ui/{who}/" if sid is not None else None,
            "detail": detail,
        }

    async def describe(self) -> Description:
        cfg = self._k8s()
        drivers = sum(1 for d in self._drivers.values() if d.created)
        failed = sum(1 for d in self._drivers.values() if d.error is not None)
        detail = (
            f"one Spark Connect driver per session in namespace '{cfg.namespace}' (image "
            f"{cfg.image}, driver heap {cfg.driver_memory}, up to {cfg.max_executors} "
            f"executors of {cfg.executor_cores} cores and {cfg.executor_memory}); "
        )
        if self.kubernetes_api is None:
            detail += "drivers are created by the running hub (GET /api/doctor shows them)"
        else:
            detail += f"{drivers} live drivers"
            if failed:
                detail += f", {failed} live sessions without one"
        if self._last_error:
            detail += f"; last failure: {self._last_error}"
        return {
            "ok": self._last_error is None,
            "mode": self.mode,
            "namespace": cfg.namespace,
            "image": cfg.image,
            "drivers": drivers,
            "detail": detail + "; each driver's Spark Connect answers only its own session "
            "(a per-session token), its executors only it (spark.authenticate) and its "
            "web UI only the hub's signed requests; the network policies keep other pods "
            "out of every driver port",
        }
