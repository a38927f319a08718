"""What ``GET /api/spark`` (a user's own server) and ``doctor`` (the install and every
user's server) say about ``spark = 'embedded'`` (``spark_embedded.py``).

Owns: those descriptions. Must not: start or stop anything.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import quote

from rsparkhub.hub.spark import Description, SparkUnavailable
from rsparkhub.hub.spark_embedded_process import java_version, pyspark_version, spark_home
from rsparkhub.hub.userdb import role_name

if TYPE_CHECKING:
    from rsparkhub.hub.spark_embedded import EmbeddedSpark


async def describe_user(svc: EmbeddedSpark, user: str) -> Description:
    """A user's own server: its state, address, database and UI, in a sentence too."""
    srv = svc._by_name(user)
    state = await svc.state_for(user)
    port = srv.port if srv is not None else None  # known once a session has started
    remote = f"sc://localhost:{port}/;user_id={quote(user, safe='')}" if port else None
    ui_url = f"/spark-ui/{quote(user, safe='')}/" if svc.ui_target(user) else None
    detail = (
        "A Spark Connect server of your own on the hub's machine, under your own account "
        "in a sandbox: it sees only your Spark directory, and only your sessions reach "
        f"it. Your sessions start in your database {role_name(user)}; its web UI is at "
        "ui_url while it runs (yours only). "
    )
    if state == "running":
        detail += "It is running."
    elif state == "starting":
        detail += "It is starting."
    elif srv is not None and srv.last_error:
        detail += f"Not running: {srv.last_error}"
    else:
        detail += (
            "Not running: it starts with your first Spark call (or with a session of a "
            "workspace that uses Spark) and stops after "
            f"{svc.settings.spark_idle_timeout_s:.0f} s without sessions or queries."
        )
    return {
        "mode": "embedded",
        "state": state,
        "remote": remote,
        "database": role_name(user),
        "ui_url": ui_url,
        "detail": detail,
    }


async def describe_install(svc: EmbeddedSpark) -> Description:
    """For doctor: Java, pyspark, the archive and the users' servers. Starts nothing."""
    mode = "embedded"
    try:
        home = spark_home()
    except SparkUnavailable as exc:
        return {"ok": False, "mode": mode, "detail": str(exc)}
    java = await java_version()
    if java is None:
        return {"ok": False, "mode": mode,
                "detail": "java not found: install a JDK 17+ (apt-get install openjdk-17-jre-headless)"}  # fmt: skip
    version = pyspark_version(home)
    running = [s for s in svc._servers.values() if s.state == "running"]
    if svc.hub is None:
        servers = "per-user servers are started by the running hub (GET /api/doctor)"
    else:
        mem = []
        for s in running:
            rss = await asyncio.to_thread(svc._sandboxes.memory, s.name)
            mem.append(f"{s.user} {rss / 2**20:.0f} MiB" if rss else s.user)
        servers = f"{len(running)} running" + (f" ({', '.join(mem)})" if mem else "")
    archive = await asyncio.to_thread(svc.archive.state)
    return {
        "ok": True,
        "mode": mode,
        "java": java,
        "pyspark": version,
        "servers": len(running),
        "detail": f"one Spark Connect server per user (pyspark {version}, {java}), each "
        f"under its user's uid in a sandbox, in {svc.users_dir}; {servers}; idle stop "
        f"after {svc.settings.spark_idle_timeout_s:.0f} s; class-data archive: {archive}",
    }
