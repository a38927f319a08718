"""``spark = 'external'``: sessions use an operator's Spark Connect server
(``spark_remote_url``), each with its own user and session ids after the URL.

Owns: the sessions' SPARK_REMOTE and whether the server's port answers. Must not: show
the URL's parameters (``token=…`` is a secret) anywhere but in a session's environment.
The hub prepares no database there: the cluster's catalog and its default database apply.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote, urlsplit

from rsparkhub.config import Settings
from rsparkhub.hub.spark import Description, SessionOwner, SparkHub, SparkService
from rsparkhub.hub.supervised import port_open

log = logging.getLogger("rsparkhub.spark")

DEFAULT_PORT = 15002


def public_url(url: str) -> str:
    """A Spark Connect URL without its parameters (``token=…`` is a secret): scheme, host
    and port only."""
    parts = urlsplit(url.split(";", 1)[0])
    return f"{parts.scheme}://{parts.netloc}"


class ExternalSpark(SparkService):
    """An external Spark Connect server at ``spark_remote_url`` (checked by Settings)."""

    mode = "external"

    def __init__(self, settings: Settings, hub: SparkHub | None = None) -> None:
        super().__init__(settings, hub)
        assert settings.spark_remote_url is not None  # Settings refuses external without it
        self.url: str = settings.spark_remote_url

    def remote(self, user: str, hub_session_id: str) -> str:
        """The whole URL (its parameters included) with the session's ids after it."""
        sid = self.spark_session_id(hub_session_id)
        base = self.url.rstrip("/")
        sep = "" if ";" in base else "/"
        return f"{base}{sep};user_id={quote(user, safe='')};session_id={sid}"

    async def session_env(self, s: SessionOwner) -> dict[str, str]:
        problem = await self._session_ids_ready()
        if problem is not None:
            return await self._without_spark(problem)
        return await self._with_preload(s, {"SPARK_REMOTE": self.remote(s.user, s.hub_session_id)})

    async def state(self) -> str:
        """running when the server's port answers, else down."""
        parts = urlsplit(self.url.split(";", 1)[0])
        if parts.hostname is None:
            return "down"
        port = parts.port or DEFAULT_PORT
        up = await asyncio.to_thread(port_open, port, parts.hostname, 2.0)
        return "running" if up else "down"

    def ui_missing(self, owner: str) -> str:
        return "This hub uses an external Spark Connect server; its UI is not served by the hub."

    async def describe_for(self, user: str, is_admin: bool) -> Description:
        return {
            "mode": self.mode,
            "state": await self.state(),
            "remote": f"{public_url(self.url)}/;user_id={quote(user, safe='')}",
            "database": None,
            "ui_url": None,
            "detail": "An external Spark Connect server: sessions get its URL with their "
            "user and session ids; its default database applies (the hub prepares none).",
        }

    async def describe(self) -> Description:
        up = await self.state() == "running"
        reach = "reachable" if up else "NOT reachable from the hub"
        return {
            "ok": up,
            "mode": self.mode,
            "detail": f"external Spark Connect server {public_url(self.url)} ({reach}); no "
            "authentication: keep it reachable from the session network only",
        }
