"""``rsparkhub environments list|gc``: an administrator's view of the hub's built
workspace environments (``GET /api/environments``, ``POST /api/environments/gc``)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rsparkhub.client import HubClient


def _ago(t: float | None) -> str:
    if not t:
        return "-"
    days = (time.time() - t) / 86400
    return f"{days:.1f} d ago" if days >= 1 else f"{days * 24:.1f} h ago"


def table(envs: list[dict[str, Any]]) -> str:
    rows = [("KIND", "KEY", "DECLARATION", "SIZE", "BUILT", "LAST USED", "MOUNTED")]
    for e in envs:
        rows.append(
            (
                e["kind"],
                e["key"][:12],
                str(e.get("declaration") or "-"),
                f"{e['bytes'] / 2**20:.1f} MiB",
                _ago(e.get("built_at")),
                _ago(e.get("last_used")),
                "yes" if e["mounted"] else "no",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


async def list_environments(url: str, token: str, as_json: bool) -> int:
    async with HubClient(url, token, agent="rsparkhub-cli") as hub:
        envs = await hub.request("GET", "/api/environments")
    sys.stdout.write((json.dumps(envs, indent=2) if as_json else table(envs)) + "\n")
    return 0


async def collect(url: str, token: str, older_than_days: float) -> int:
    async with HubClient(url, token, agent="rsparkhub-cli") as hub:
        done = await hub.request(
            "POST", "/api/environments/gc", json={"older_than_days": older_than_days}
        )
    for name in done["removed"]:
        sys.stdout.write(f"removed {name}\n")
    sys.stdout.write(f"{len(done['removed'])} environment(s) removed\n")
    return 0
