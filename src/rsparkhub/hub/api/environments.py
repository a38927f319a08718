"""Administrators' view of the built workspace environments (hub/environments/): list
them, and remove those unused for a while (``rsparkhub environments list|gc``). Admins
only; nothing a session mounts is ever removed (gc.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from rsparkhub.hub.api.deps import AdminDep, HubDep
from rsparkhub.hub.environments import gc

router = APIRouter(tags=["environments"])


class Collect(BaseModel):
    """``older_than_days``: remove environments no session was given for this long."""

    model_config = ConfigDict(extra="forbid")
    older_than_days: float = Field(ge=0, le=36500)


@router.get("/api/environments", summary="The built workspace environments (admin)")
async def list_environments(caller: AdminDep, hub: HubDep) -> list[dict[str, Any]]:
    envs = hub.sessions.lifecycle.environments
    return await gc.listing(envs.builder.root, envs.db)


@router.post(
    "/api/environments/gc",
    summary="Remove environments unused for a while that no session mounts (admin)",
)
async def collect_environments(caller: AdminDep, hub: HubDep, body: Collect) -> dict[str, Any]:
    envs = hub.sessions.lifecycle.environments
    removed = await gc.collect(envs.builder, envs.db, body.older_than_days * 86400)
    return {"removed": removed}
