"""The wire side of run records: the ``environment`` event and the one canonical form of a
session's environment snapshot (R/Python versions, every installed package version, OS).

Kept out of ``protocol.py`` (which re-exports ``EnvironmentEvent`` into its ``Event``
union) because it is its own concern: the agent builds snapshots (``agent/environment.py``),
the hub stores them (``hub/runs/``). An environment's id is the sha256 of its canonical JSON
— the same bytes the hub keeps in the blob store — so two sessions with the same packages
share one id, and a later re-run can ask for exactly that environment.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EnvironmentEvent(BaseModel):
    """What a ``run``/``source``/``render`` request runs with: ``environment_id`` names the
    session's environment snapshot. The agent sends ``content`` (the snapshot) the first time
    an id occurs in its stream; the hub stores it, takes it out and keeps only the id, like a
    plot's image — clients never see ``content``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["environment"] = "environment"
    request_id: str
    environment_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    content: dict[str, Any] | None = None


def canonical(snapshot: dict[str, Any]) -> bytes:
    """The snapshot's bytes: sorted keys, no spaces, UTF-8 (what its id is the hash of)."""
    return json.dumps(snapshot, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def environment_id(snapshot: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(snapshot)).hexdigest()


def summary(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A few fields for listings: OS, and per language its version and package count
    (whatever the snapshot's shape: it comes from the session)."""

    def obj(value: object) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    def listed(value: object) -> list[Any]:
        return value if isinstance(value, list) else []

    return {
        "os": obj(snapshot.get("os")).get("name"),
        "languages": {
            str(lang): {
                "version": obj(info).get("version"),
                "packages": len(listed(obj(info).get("packages"))),
            }
            for lang, info in sorted(obj(snapshot.get("languages")).items())
        },
    }
