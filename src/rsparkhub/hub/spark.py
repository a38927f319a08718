"""Spark for sessions: the contract every mode keeps (:class:`SparkService`, ``hub.spark``)
and :func:`build_spark`, which picks the mode's class once from ``settings.spark``:

=============== ====================================== =====================================
``spark``       class                                  what runs
=============== ====================================== =====================================
``embedded``    ``spark_embedded.EmbeddedSpark``       a Spark Connect server of their own
                                                       for each user, on the hub's machine
``external``    ``spark_external.ExternalSpark``       an operator's server at
                                                       ``spark_remote_url``
``kubernetes``  ``spark_kubernetes.KubernetesSpark``   one driver per session, next to the
                                                       Kubernetes spawner's session pods
``off``         :class:`OffSpark`                      nothing
=============== ====================================== =====================================

What every mode shares, and this module owns:

* **Sessions**: ``SPARK_REMOTE=sc://HOST:PORT/;user_id=<user>;session_id=<uuid>``: one
  server-side Spark session per hub session (temporary views, settings, current
  database). The uuid is derived from the hub session id with a secret in
  ``DATA_DIR/spark/secret`` (:meth:`SparkService.spark_session_id`), so it is stable
  across hub restarts and not guessable.
* **Tokens**: a ``user_id`` is not authentication: whoever gets into a server can use it as
  any user. So no mode shares a server between users, and the servers the hub runs answer
  only a pre-shared token (:func:`connect_token`, derived from the same secret): an
  embedded server its user's, which only that user's sessions have (and reach, through
  their network namespaces); a Kubernetes driver its session's (plus a NetworkPolicy).
  An external server's URL should be reachable only from the session network, and it is
  the operator's to trust.
* **Web UI**: a user's driver UI is served only through the hub's checked proxy
  (``hub/api/spark.py``), and the servers the hub runs answer only requests the proxy
  signs (Spark's ``JWSFilter``, a key per server: :func:`ui_key`, :func:`ui_bearer`,
  :meth:`SparkService.ui_headers`); :meth:`SparkService.ui_target` says where it is,
  :meth:`SparkService.may_open_ui` who may open it and :meth:`SparkService.ui_missing`
  why there is none.
* **The session manager's calls**: :meth:`~SparkService.session_env` before a session
  starts, :meth:`~SparkService.session_started` once it runs (and for every session
  adopted after a hub restart, after :meth:`~SparkService.register`),
  :meth:`~SparkService.session_ended` when it ends. Only the session_env call is the same
  in every mode; the others are no-ops where a mode has nothing to do.

Must not: know a mode's own machinery (servers, drivers, mounts): that is each mode's
module. Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rsparkhub.agent.pykernel_spark import PRELOAD_ENV as PRELOAD_ENV
from rsparkhub.config import Settings

if TYPE_CHECKING:
    import httpx

    from rsparkhub.hub.blobs import BlobStore
    from rsparkhub.hub.db.engine import Database
    from rsparkhub.hub.identities import Identities
    from rsparkhub.hub.sandbox import Sandboxes
    from rsparkhub.hub.sessions.live import Registry

log = logging.getLogger("rsparkhub.spark")

# What a mode answers for GET /api/spark (describe_for) and doctor (describe).
Description = dict[str, Any]
Announce = Callable[[str], Awaitable[None]]


def connect_token(secret: bytes, subject: str) -> str:
    """The one rule for Spark Connect tokens: HMAC-SHA256 of ``subject``, keyed with the
    Spark services' secret, in hex. Derived, never stored: the hub gives the same token to a
    server (or driver) and to the sessions allowed in, after a restart too."""
    msg = b"spark-connect-token:" + subject.encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


# PRELOAD_ENV is set (to "1") in a session's environment when its workspace uses Spark: its
# Python kernel then imports pyspark's Connect client in the background
# (agent/pykernel_spark.py), so that the first Spark statement does not wait for it.

# Spark's own servlet filter (Spark >= 4.0): every UI request must carry
# ``Authorization: Bearer <JWS>`` signed (HS256) with the server's key, else 403.
UI_FILTER = "org.apache.spark.ui.JWSFilter"
UI_BEARER_TTL_S = 300  # a proxied request's JWS expires after this (clock skew included)


def ui_key(secret: bytes, subject: str) -> str:
    """The key of the web UI of ``subject``'s server or driver (the same subjects as
    :func:`connect_token`): 256 bits, base64url, as Spark's JWSFilter reads it. Derived
    from the hub's secret, never from the Connect token a session holds."""
    raw = bytes.fromhex(connect_token(secret, f"ui:{subject}"))
    return base64.urlsafe_b64encode(raw).decode()


def ui_filter_conf(key: str) -> dict[str, str]:
    """The Spark settings that make a UI answer only requests signed with ``key``."""
    return {
        "spark.ui.filters": UI_FILTER,
        f"spark.{UI_FILTER}.param.secretKey": key,
        f"spark.{UI_FILTER}.param.requireExpiration": "true",
    }


def ui_bearer(key: str, now: float | None = None) -> str:
    """The ``Authorization`` value the hub's UI proxy sends: a compact HS256 JWS signed
    with ``key`` that expires in ``UI_BEARER_TTL_S``."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    issued = int(time.time() if now is None else now)
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"sub": "rsparkhub", "iat": issued, "exp": issued + UI_BEARER_TTL_S}
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    mac = hmac.new(base64.urlsafe_b64decode(key), signing_input, hashlib.sha256).digest()
    return f"Bearer {header}.{payload}.{b64(mac)}"


class SparkUnavailable(Exception):
    """Spark is off or cannot run here; the message says why."""


@dataclass(frozen=True)
class SessionOwner:
    """A hub session as Spark sees it: its id, its owner (name and id) and workspace."""

    hub_session_id: str
    user: str
    user_id: str | None = None
    workspace_id: str | None = None


@dataclass(frozen=True)
class SparkHub:
    """What the Spark service uses of the hub: the database and blobs (does a workspace use
    Spark), the sandboxes and users' identities (the embedded servers), and the sessions'
    registry (is a session live, whose is it)."""

    db: Database
    blobs: BlobStore
    sandboxes: Sandboxes
    identities: Identities
    sessions: Registry


def build_spark(
    settings: Settings, hub: SparkHub | None = None, *, kubernetes_api: Any = None
) -> SparkService:
    """The Spark service of ``settings.spark``; ``hub`` is None only outside a running hub
    (``doctor`` from the command line, tests of one mode). ``kubernetes_api`` is the
    Kubernetes spawner's ``CoreV1Api`` (``spark = 'kubernetes'`` creates drivers with it)."""
    mode = settings.spark
    if mode == "embedded":
        from rsparkhub.hub.spark_embedded import EmbeddedSpark

        return EmbeddedSpark(settings, hub)
    if mode == "external":
        from rsparkhub.hub.spark_external import ExternalSpark

        return ExternalSpark(settings, hub)
    if mode == "kubernetes":
        from rsparkhub.hub.spark_kubernetes import KubernetesSpark

        return KubernetesSpark(settings, hub, kubernetes_api=kubernetes_api)
    return OffSpark(settings, hub)


class SparkService(ABC):
    """The hub's Spark service (``hub.spark``): what the session manager, the API routes
    and doctor call, whatever the mode. Subclasses say how SPARK_REMOTE is made, what
    state Spark is in and what users and doctor are told."""

    mode: ClassVar[str]
    # Who may open a user's Spark UI, in the words of a 403 ("… is open to {} only").
    ui_audience: ClassVar[str] = "its user and to administrators"

    def __init__(self, settings: Settings, hub: SparkHub | None = None) -> None:
        self.settings = settings
        self.base = settings.data_dir / "spark"
        self.hub = hub
        self._secret: bytes | None = None
        self._last_error: str | None = None
        self._http: httpx.AsyncClient | None = None  # the UI proxy's, made on first use

    @property
    def enabled(self) -> bool:
        return True

    def is_live(self, hub_session_id: str) -> bool:
        """Whether the hub session is running (True outside a running hub)."""
        if self.hub is None:
            return True
        live = self.hub.sessions.get(hub_session_id)
        return live is not None and bool(live.alive)

    # ------------------------------------------------------------------ session ids
    def _secret_bytes(self) -> bytes:
        if self._secret is None:
            self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.base / "secret"
            if not path.exists():
                path.write_text(secrets.token_hex(32))
                path.chmod(0o600)
            self._secret = path.read_text().strip().encode()
        return self._secret

    async def _uses_spark(self, workspace_id: str | None) -> bool:
        """Whether a workspace's files mention Spark (hub/spark_workspace.py): its sessions
        then start Spark early (the user's server, ``PRELOAD_ENV``). False when it cannot
        be told."""
        if workspace_id is None or self.hub is None:
            return False
        from rsparkhub.hub.spark_workspace import workspace_uses_spark

        try:
            return await workspace_uses_spark(self.hub, workspace_id)
        except Exception:  # noqa: BLE001 - then Spark starts at first use
            log.warning("spark: could not look at workspace %s", workspace_id, exc_info=True)
            return False

    async def _with_preload(self, s: SessionOwner, env: dict[str, str]) -> dict[str, str]:
        """``env`` (a session's SPARK_REMOTE …), with ``PRELOAD_ENV`` when its workspace
        uses Spark."""
        return {**env, PRELOAD_ENV: "1"} if await self._uses_spark(s.workspace_id) else env

    async def _without_spark(self, why: BaseException | str) -> dict[str, str]:
        """A session starts without Spark: say why in the log and in ``describe``."""
        log.warning("session without Spark: %s", why)
        self._last_error = str(why)
        return {}

    async def _session_ids_ready(self) -> str | None:
        """Make the secret the session ids derive from; why not, when it cannot be made."""
        try:
            await asyncio.to_thread(self._secret_bytes)
        except OSError as exc:
            return str(exc)
        return None

    def spark_session_id(self, hub_session_id: str) -> str:
        """The Spark Connect session id (a UUID) of a hub session."""
        digest = hmac.new(self._secret_bytes(), hub_session_id.encode(), hashlib.sha256)
        return str(uuid.UUID(bytes=digest.digest()[:16], version=4))

    def connect_token(self, subject: str) -> str:
        """The Spark Connect token (a server's pre-shared key) of ``subject``: a user's id
        for their own embedded server, ``session:<hub session id>`` for a session's driver
        on Kubernetes. Blocking (it may create the secret file)."""
        return connect_token(self._secret_bytes(), subject)

    def database(self, user: str) -> str | None:
        """The database a user's sessions start in, when the hub prepares one."""
        return None

    # ------------------------------------------------------------------ sessions
    @abstractmethod
    async def session_env(self, s: SessionOwner) -> dict[str, str]:
        """SPARK_REMOTE for a new session, or {} (and a warning) when Spark is off or
        unavailable. Never raises for Spark's sake: a session starts without it."""

    def register(self, s: SessionOwner) -> None:
        """A live session adopted at hub start (its SPARK_REMOTE is kept)."""
        return None  # nothing to do unless the mode overrides it

    async def session_started(
        self, s: SessionOwner, spawner_state: Mapping[str, Any], announce: Announce | None = None
    ) -> None:
        """A session runs (just started, or adopted after a hub restart). Never raises;
        ``announce`` tells the session's clients what they should know."""
        return None  # nothing to do unless the mode overrides it

    async def session_ended(self, hub_session_id: str) -> None:
        """The session ended (idempotent, never raises)."""
        return None  # nothing to do unless the mode overrides it

    async def close(self) -> None:
        """Hub shutdown."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # ------------------------------------------------------------------ state, UI
    @abstractmethod
    async def state(self) -> str:
        """running | starting | down | off."""

    def ui_target(self, owner: str) -> str | None:
        """The base URL (``http://HOST:PORT``) of the Spark web UI the hub proxies at
        ``/spark-ui/<owner>/``, or None when there is none right now."""
        return None

    async def ui_headers(self, owner: str) -> dict[str, str]:
        """What the UI proxy adds to a request to ``owner``'s UI: the ``Authorization`` its
        server's filter asks for (:func:`ui_bearer`), or nothing."""
        return {}

    def ui_subject_key(self, subject: str) -> str:
        """:func:`ui_key` of ``subject``. Blocking (it may create the secret file)."""
        return ui_key(self._secret_bytes(), subject)

    def may_open_ui(self, caller: str, is_admin: bool, owner: str) -> bool:
        """Whether ``caller`` may open ``owner``'s Spark UI: its user and administrators."""
        return caller == owner or is_admin

    def ui_missing(self, owner: str) -> str:
        """Why ``owner`` has no Spark UI right now (ui_target is None): a sentence."""
        return f"No Spark driver of '{owner}' is running right now: it starts with their session."

    def http(self) -> httpx.AsyncClient:
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

    @abstractmethod
    async def describe_for(self, user: str, is_admin: bool) -> Description:
        """What ``GET /api/spark`` tells a user (mode, state, remote, database, ui_url,
        detail): no secrets, no other session's ids."""

    @abstractmethod
    async def describe(self) -> Description:
        """For doctor: ``ok``, ``mode`` and a ``detail`` sentence. Starts nothing."""


class OffSpark(SparkService):
    """``spark = 'off'``: sessions get no SPARK_REMOTE."""

    mode = "off"

    @property
    def enabled(self) -> bool:
        return False

    async def session_env(self, s: SessionOwner) -> dict[str, str]:
        return {}

    async def state(self) -> str:
        return "off"

    def ui_missing(self, owner: str) -> str:
        return "Spark is off on this hub (spark = 'off'), so there is no Spark UI."

    async def describe_for(self, user: str, is_admin: bool) -> Description:
        return {
            "mode": self.mode,
            "state": "off",
            "remote": None,
            "database": None,
            "ui_url": None,
            "detail": "Spark is off on this hub (spark = 'off'): sessions get no SPARK_REMOTE.",
        }

    async def describe(self) -> Description:
        return {"ok": False, "mode": self.mode, "detail": "off (spark = 'off')"}
