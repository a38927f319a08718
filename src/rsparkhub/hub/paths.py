"""The path rules of ``rsparkhub.paths`` as the hub's HTTP errors (400, with the rule's code)."""

from __future__ import annotations

from rsparkhub import paths
from rsparkhub.hub.errors import ApiError


def clean_path(raw: str) -> str:
    try:
        return paths.clean_path(raw)
    except paths.PathError as exc:
        raise ApiError(400, exc.code, exc.message) from None


def clean_name(raw: str, what: str = "name") -> str:
    try:
        return paths.clean_name(raw, what)
    except paths.PathError as exc:
        raise ApiError(400, exc.code, exc.message) from None
