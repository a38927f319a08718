"""Spark for sessions, one class per way it runs (``settings.spark``; :func:`build_spark`
picks it): a Spark Connect server of their own for each user (``'embedded'``,
:class:`~rsparkhub.hub.spark_embedded.EmbeddedSpark`), an external one (``'external'``),
per-session drivers on Kubernetes (``'kubernetes'``, next to the Kubernetes spawner's session
pods, see ``spark_k8s.py``), or none (``'off'``). :class:`SparkService` here is the base and
serves the last three.

* **Sessions**: ``SPARK_REMOTE=sc://HOST:PORT/;user_id=<user>;session_id=<uuid>``: one
  server-side Spark session per hub session (temporary views, settings, current
  database). The uuid is derived from the hub session id with a secret in
  ``DATA_DIR/spark/secret``, so it is stable across hub restarts and not guessable.
* **No authentication**: Spark Connect does not authenticate its clients: whoever reaches a
  server's port can use it as any ``user_id``. So no mode shares a server between users
  where others can reach it: the embedded servers are each reachable only from their own
  user's sessions (network namespaces), Kubernetes drivers only from their session pod
  (a NetworkPolicy). An external server's URL should be reachable only from the session
  network, and it is the operator's to trust.
* **Web UI**: a user's driver UI is served only through the hub's checked proxy
  (``hub/api/spark.py``); :meth:`SparkService.ui_target` says where it is and
  :meth:`SparkService.may_open_ui` who may open it.
* **Kubernetes drivers** (``spark = 'kubernetes'``): the session manager calls
  :meth:`SparkService.session_started` once the session's pod exists (and for every session
  adopted after a hub restart) and :meth:`SparkService.session_ended` when it ends (both are
  no-ops in the other modes). The first creates the session's driver pod, Service and
  NetworkPolicy with the session pod as owner, under the session pod's uid
  (``spark_k8s.create_driver``, idempotent, so an adopted session keeps its driver); the second deletes them (``delete_driver``, idempotent). A driver that
  cannot be created does not stop the session: its clients are told why, the hub logs it,
  ``GET /api/spark`` repeats it, and Spark calls in the session fail to connect. The UI of a
  user's most recently started session with a driver is ``/spark-ui/<user>/`` (the user and
  administrators). The Spark session id in ``SPARK_REMOTE`` is derived as above.

Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import secrets
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from rsparkhub.config import Settings
from rsparkhub.hub import spark_k8s as sk

if TYPE_CHECKING:
    from rsparkhub.hub.state import Hub

log = logging.getLogger("rsparkhub.spark")

SERVER_MODULE = "rsparkhub.agent.spark"  # the embedded servers (agent/spark.py)


class SparkUnavailable(Exception):
    """Spark is off or cannot run here; the message says why."""


def build_spark(settings: Settings) -> SparkService:
    """The Spark service of ``settings.spark``."""
    if settings.spark == "embedded":
        from rsparkhub.hub.spark_embedded import EmbeddedSpark

        return EmbeddedSpark(settings)
    return SparkService(settings)


@dataclass(eq=False)
class _Driver:
    """What the hub knows of one session's Kubernetes driver (``spark = 'kubernetes'``)."""

    user: str
    order: int  # later sessions have larger numbers
    created: bool = False
    error: str | None = None  # why it could not be created
    removed: bool = False  # what a failed creation left was deleted again
    ended: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def spark_home() -> Path:
    try:
        import importlib.util

        spec = importlib.util.find_spec("pyspark")
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise SparkUnavailable(
            "the pyspark package is not installed (pip install 'pyspark[connect]')"
        )
    home = Path(spec.origin).parent
    if not (home / "bin" / "spark-submit").exists():
        raise SparkUnavailable(f"pyspark at {home} has no bin/spark-submit")
    return home


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def public_url(url: str) -> str:
    """A Spark Connect URL without its parameters (``token=…`` is a secret): scheme, host
    and port only."""
    parts = urlsplit(url.split(";", 1)[0])
    return f"{parts.scheme}://{parts.netloc}"


class SparkService:
    """The hub's Spark service (``hub.spark``): the base of every mode, and the
    ``'off'``, ``'external'`` and ``'kubernetes'`` modes themselves."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mode: str = settings.spark
        self.base = settings.data_dir / "spark"
        self.hub: Hub | None = None  # set by attach()
        self.is_live: Callable[[str], bool] = lambda _sid: True
        self._secret: bytes | None = None
        self._last_error: str | None = None
        self._http: Any = None  # httpx.AsyncClient of the UI proxy, made on first use
        # --- spark = 'kubernetes'
        self.kubernetes_api: Any = None  # the Kubernetes spawner's CoreV1Api (build_hub)
        self._k8s_cfg: sk.SparkK8sConfig | None = None
        self._drivers: dict[str, _Driver] = {}  # by hub session id, while the session lives
        self._driver_order = itertools.count()

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def attach(self, hub: Hub) -> None:
        """The hub this service belongs to (its sandboxes, identities, database)."""
        self.hub = hub
        self.is_live = lambda sid: (s := hub.sessions.by_id.get(sid)) is not None and s.alive

    # ------------------------------------------------------------------ files
    def _secret_bytes(self) -> bytes:
        if self._secret is None:
            self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.base / "secret"
            if not path.exists():
                path.write_text(secrets.token_hex(32))
                path.chmod(0o600)
            self._secret = path.read_text().strip().encode()
        return self._secret

    def spark_session_id(self, hub_session_id: str) -> str:
        digest = hmac.new(self._secret_bytes(), hub_session_id.encode(), hashlib.sha256)
        return str(uuid.UUID(bytes=digest.digest()[:16], version=4))

    def remote(self, user: str, hub_session_id: str) -> str:
        sid = self.spark_session_id(hub_session_id)
        assert self.settings.spark_remote_url is not None  # external: checked by Settings
        base = self.settings.spark_remote_url.rstrip("/")
        sep = "" if ";" in base else "/"
        return f"{base}{sep};user_id={quote(user, safe='')};session_id={sid}"

    def database(self, user: str) -> str | None:
        """The database a user's sessions start in: None here (an external cluster's
        catalog is its own; its default database applies)."""
        return None

    # ------------------------------------------------------------------ sessions
    async def session_env(
        self,
        user: str,
        hub_session_id: str,
        *,
        user_id: str | None = None,
        workspace_id: str | None = None,
    ) -> dict[str, str]:
        """SPARK_REMOTE for a new session, or {} (and a warning) when Spark is off or
        unavailable."""
        if self.mode not in ("external", "kubernetes"):
            return {}  # off
        try:
            await asyncio.to_thread(self._secret_bytes)
            if self.mode == "kubernetes":
                # the session's own driver (created by session_started), by its Service name
                url = sk.remote_url(
                    self._k8s(), user, hub_session_id, self.spark_session_id(hub_session_id)
                )
                return {"SPARK_REMOTE": url}
        except OSError as exc:
            log.warning("session without Spark: %s", exc)
            self._last_error = str(exc)
            return {}
        return {"SPARK_REMOTE": self.remote(user, hub_session_id)}

    def register(
        self,
        hub_session_id: str,
        user: str,
        *,
        user_id: str | None = None,
        workspace_id: str | None = None,
    ) -> None:
        """A live session adopted at hub start (only the embedded mode keeps track)."""

    # ------------------------------------------------------------------ Kubernetes drivers
    def _k8s(self) -> sk.SparkK8sConfig:
        if self._k8s_cfg is None:
            self._k8s_cfg = sk.SparkK8sConfig.from_settings(self.settings)
        return self._k8s_cfg

    async def session_started(
        self,
        user: str,
        hub_session_id: str,
        spawner_state: Mapping[str, Any],
        *,
        workspace_id: str | None = None,
        announce: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """A session's pod exists (just started, or adopted after a hub restart). With
        ``spark = 'kubernetes'``: create the session's driver pod, Service and NetworkPolicy,
        owned by the session pod (``spawner_state`` ``pod`` and ``uid``) so that Kubernetes
        deletes them with it, running as the session pod's uid and gid (``run_as_user``,
        ``run_as_group``); an existing driver is kept. Never raises: a failure is logged,
        told to the session's clients through ``announce`` and shown by ``GET /api/spark``;
        the session runs on without Spark. A no-op in the other modes."""
        if self.mode != "kubernetes":
            return
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
                await sk.create_driver(
                    self.kubernetes_api,
                    cfg,
                    user,
                    hub_session_id,
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
        """The session ended: delete its Kubernetes driver (idempotent; errors are logged —
        Kubernetes deletes it with the session pod anyway). A no-op in the other modes."""
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

    async def close(self) -> None:
        """Hub shutdown."""
        if self._http is not None:
            await self._http.aclose()

    # ------------------------------------------------------------------ state, UI
    async def state(self) -> str:
        """running | starting | down | off. External: whether its port answers."""
        if self.mode == "off":
            return "off"
        if self.mode == "external" and self.settings.spark_remote_url:
            parts = urlsplit(self.settings.spark_remote_url.split(";", 1)[0])
            if parts.hostname is None:
                return "down"
            up = await asyncio.to_thread(_port_open, parts.port or 15002, parts.hostname, 2.0)
            return "running" if up else "down"
        if self.mode == "kubernetes":
            return "running" if any(d.created for d in self._drivers.values()) else "down"
        return "down"

    def ui_target(self, owner: str) -> str | None:
        """The base URL (``http://HOST:PORT``) of the Spark web UI the hub proxies at
        ``/spark-ui/<owner>/``, or None when there is none right now. ``owner`` is a user
        name: the Kubernetes mode gives the UI of that user's most recently started
        session's driver (its Service's port 4040, ``spark_kubernetes_ui_url``); an external
        server's UI is not the hub's to serve."""
        if self.mode == "kubernetes":
            sid = self._live_driver(owner)
            return sk.ui_url(self._k8s(), sid) if sid is not None else None
        return None

    def may_open_ui(self, caller: str, is_admin: bool, owner: str) -> bool:
        """Whether ``caller`` may open ``owner``'s Spark UI: its user and administrators."""
        return caller == owner or is_admin

    def http(self) -> Any:
        """The UI proxy's HTTP client (loopback / cluster-internal; no proxy env)."""
        if self._http is None:
            import httpx

            # httpx logs every request at INFO: one line per page asset is noise here
            httpx_log = logging.getLogger("httpx")
            if httpx_log.level == logging.NOTSET:
                httpx_log.setLevel(logging.WARNING)

            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(60.0, connect=5.0),
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
            )
        return self._http

    async def describe_for(self, user: str, is_admin: bool) -> dict[str, Any]:
        """What ``GET /api/spark`` tells a user: no secrets, no other session's ids."""
        mode = self.mode
        if mode == "kubernetes":
            return self._describe_kubernetes_for(user)
        state = await self.state()
        remote: str | None = None
        if mode == "external" and self.settings.spark_remote_url:
            remote = f"{public_url(self.settings.spark_remote_url)}/;user_id={quote(user, safe='')}"
        detail = {
            "off": "Spark is off on this hub (spark = 'off'): sessions get no SPARK_REMOTE.",
            "external": "An external Spark Connect server: sessions get its URL with their "
            "user and session ids; its default database applies (the hub prepares none).",
        }.get(mode, f"Spark drivers are managed by the {mode} wiring.")  # fmt: skip
        return {
            "mode": mode,
            "state": state,
            "remote": remote,
            "database": self.database(user),
            "ui_url": None,
            "detail": detail,
        }

    def _describe_kubernetes_for(self, user: str) -> dict[str, Any]:
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
            "mode": "kubernetes",
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

    # ------------------------------------------------------------------ doctor
    async def describe(self) -> dict[str, Any]:
        """For doctor: what this mode runs and whether it is reachable. Starts nothing."""
        mode = self.mode
        if mode == "off":
            return {"ok": False, "mode": mode, "detail": "off (spark = 'off')"}
        if mode == "external":
            url = public_url(self.settings.spark_remote_url or "")
            state = await self.state()
            reach = "reachable" if state == "running" else "NOT reachable from the hub"
            return {
                "ok": state == "running",
                "mode": mode,
                "detail": f"external Spark Connect server {url} ({reach}); no authentication: "
                "keep it reachable from the session network only",
            }
        if mode == "kubernetes":
            return self._describe_kubernetes()
        return {"ok": False, "mode": mode, "detail": f"unknown Spark mode {mode!r}"}

    def _describe_kubernetes(self) -> dict[str, Any]:
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
            "mode": "kubernetes",
            "namespace": cfg.namespace,
            "image": cfg.image,
            "drivers": drivers,
            "detail": detail + "; Spark Connect has no authentication: every session pod "
            "can reach every driver's port 15002 (the network policies keep all else out)",
        }


def _pyspark_version(home: Path) -> str:
    try:
        text = (home / "version.py").read_text()
        return text.split("=", 1)[1].strip().strip("\"'")
    except (OSError, IndexError):
        return "?"


async def _java_version() -> str | None:
    try:
        proc = await asyncio.create_subprocess_exec(
            "java", "-version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    except (OSError, TimeoutError):
        return None
    lines = out.decode(errors="replace").strip().splitlines()
    return lines[0] if lines and proc.returncode == 0 else None
