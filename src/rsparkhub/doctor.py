"""``rsparkhub doctor``: which languages and services are usable here, and why not."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager

from rsparkhub.config import Settings
from rsparkhub.hub.spawners.local import LocalSpawner

KERNELS = {"r": "ir", "python": "python3", "bash": "bash"}


async def _version(cmd: list[str]) -> str | None:
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    except (OSError, TimeoutError):
        return None
    text = out.decode(errors="replace").strip().splitlines()
    return text[0] if text and proc.returncode == 0 else None


async def report(
    settings: Settings,
    spawner: Any | None = None,
    userdb: Any | None = None,
    spark: Any | None = None,
) -> dict[str, Any]:
    specs = KernelSpecManager().find_kernel_specs()
    languages: dict[str, dict[str, Any]] = {}
    for lang, kname in KERNELS.items():
        if kname in specs:
            languages[lang] = {"ok": True, "detail": f"kernel '{kname}' at {specs[kname]}"}
        else:
            hint = {
                "r": "install r-base-core and r-cran-irkernel (scripts/install.sh does)",
                "python": "run: python -m ipykernel install --sys-prefix",
                "bash": "run: python -m bash_kernel.install --sys-prefix",
            }[lang]
            languages[lang] = {"ok": False, "detail": f"no '{kname}' kernelspec: {hint}"}
    if languages["r"]["ok"]:
        r = await _version(["R", "--version"])
        languages["r"]["version"] = r
    tools: dict[str, dict[str, Any]] = {}
    for name, cmd in {
        "pandoc": ["pandoc", "--version"],
        "java": ["java", "-version"],
        "bwrap": ["bwrap", "--version"],
    }.items():
        found = shutil.which(cmd[0])
        version = await _version(cmd) if found else None
        tools[name] = {
            "ok": version is not None,
            "detail": version or f"'{cmd[0]}' not found on PATH",
        }
    pg = shutil.which("pg_ctl") or next(
        iter(sorted(__import__("glob").glob("/usr/lib/postgresql/*/bin/pg_ctl"))), None
    )
    tools["postgresql"] = {
        "ok": bool(pg),
        "detail": pg or "PostgreSQL server binaries not installed (apt install postgresql)",
    }
    sp = spawner or LocalSpawner(settings)
    own_spawner = None
    if settings.spawner == "kubernetes" and getattr(sp, "name", "") != "kubernetes":
        # `rsparkhub doctor` hands in a local spawner: report the one the hub would use.
        from rsparkhub.hub.spawners.base import SpawnError
        from rsparkhub.hub.spawners.kubernetes import KubernetesSpawner

        try:
            sp = own_spawner = KubernetesSpawner.from_settings(settings)
        except SpawnError as exc:
            sp = _Unavailable("kubernetes", str(exc))
    sessions = dict(sp.describe())
    check = getattr(sp, "check", None)
    if check is not None:  # can the hub reach what runs its sessions (Kubernetes API)?
        sessions["api_check"] = await check()
    if own_spawner is not None:
        await own_spawner.close()
    if userdb is None:
        from rsparkhub.hub.userdb import UserDatabases

        userdb = UserDatabases(settings)
    if spark is None:
        from rsparkhub.hub.spark import build_spark

        spark = build_spark(settings)
    return {
        "languages": languages,
        "tools": tools,
        "user_databases": await userdb.describe(),
        "spark": await spark.describe(),
        "sessions": sessions,
        "database": settings.db_url.split("://")[0],
    }


class _Unavailable:
    """A spawner that could not be built (bad credentials …): doctor says why."""

    def __init__(self, name: str, why: str) -> None:
        self.name, self.why = name, why

    def describe(self) -> dict[str, Any]:
        return {"spawner": self.name, "sandbox": "unavailable", "sandbox_reason": self.why}
