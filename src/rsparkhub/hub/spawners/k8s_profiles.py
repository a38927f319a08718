"""Session profiles of the Kubernetes spawner: what an admin offers (image, CPU, memory,
GPUs, node selector, tolerations, environment; optionally only to some users) and a user
picks when starting a session.

Profiles are configured as a JSON list (``kubernetes_profiles`` /
``RSPARKHUB_KUBERNETES_PROFILES``, see docs/configuration.md). Everything here is plain
pydantic so ``rsparkhub.config`` can import it without importing the Kubernetes client.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# A Kubernetes resource quantity (k8s.io/apimachinery resource.Quantity), e.g. 500m, 2, 4Gi.
_QUANTITY = re.compile(
    r"^(?P<num>[+]?(\d+(\.\d*)?|\.\d+))(?P<suffix>m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+)?$"
)
_SUFFIX = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
PROFILE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Set by the spawner itself; a profile may not override them.
RESERVED_ENV = frozenset(
    {
        "RSPARKHUB_SESSION_TOKEN",
        "RSPARKHUB_SESSION_ID",
        "RSPARKHUB_WORKSPACE_ID",
        "HOME",
        "USER",
        "R_LIBS_USER",
        "PYTHONUSERBASE",
    }
)
# Kubernetes label keys/values (node selectors): an optional DNS prefix, a name of 63.
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity ("500m" → 0.5, "4Gi" → 4294967296)."""
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise ValueError(f"'{text}' is not a Kubernetes quantity (examples: 500m, 2, 512Mi, 4Gi)")
    try:
        num = Decimal(m["num"])
    except InvalidOperation:  # pragma: no cover - the regex admits only numbers
        raise ValueError(f"'{text}' is not a number") from None
    suffix = m["suffix"] or ""
    if suffix[:1] in ("e", "E"):
        return num * (Decimal(10) ** int(suffix[1:]))
    return num * _SUFFIX[suffix]


def _quantity(v: str | None) -> str | None:
    if v is None:
        return None
    v = str(v).strip()
    parse_quantity(v)
    return v


class Toleration(BaseModel):
    """A pod toleration, with Kubernetes' own field names."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, alias="tolerationSeconds", ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator 'Exists' takes no value")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without a key needs operator 'Exists'")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds applies only to effect 'NoExecute'")
        return self

    def to_k8s(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class KubernetesProfile(BaseModel):
    """One kind of session an admin offers. Quantities use Kubernetes' notation."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Short id users pick (lower-case letters, digits, '-').")
    display_name: str | None = Field(default=None, max_length=100)
    description: str = Field("", max_length=500)
    image: str | None = Field(default=None, description="Session image; default kubernetes_image.")
    cpu_request: str = "250m"
    cpu_limit: str | None = "2"
    memory_request: str = "1Gi"
    memory_limit: str | None = "4Gi"
    gpu: int = Field(default=0, ge=0, le=64, description="GPUs (resource nvidia.com/gpu).")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    internet: bool = Field(
        default=True,
        description="Sessions may reach the internet (never the cluster's private ranges).",
    )
    users: list[str] | None = Field(default=None, description="Only these users (None = everyone).")
    admins_only: bool = False
    default: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not PROFILE_NAME.match(v):
            raise ValueError(
                f"profile name '{v}': 1-63 lower-case letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        return v

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    @classmethod
    def _quantities(cls, v: str | None) -> str | None:
        return _quantity(v)

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or any(c.isspace() for c in v)):
            raise ValueError(f"image '{v}' is not an image reference")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not ENV_NAME.match(k):
                raise ValueError(f"environment variable name '{k}' is not valid")
            if k in RESERVED_ENV:
                raise ValueError(f"environment variable '{k}' is set by rsparkhub itself")
        return v

    @field_validator("node_selector")
    @classmethod
    def _selector(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not _LABEL_KEY.match(k) or not _LABEL_VALUE.match(val):
                raise ValueError(f"node selector '{k}={val}' is not a valid label")
        return v

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> KubernetesProfile:
        for what, req, lim in (
            ("cpu", self.cpu_request, self.cpu_limit),
            ("memory", self.memory_request, self.memory_limit),
        ):
            if lim is not None and parse_quantity(req) > parse_quantity(lim):
                raise ValueError(
                    f"profile '{self.name}': {what}_request {req} is above {what}_limit {lim}"
                )
        return self

    def allows(self, user: str, is_admin: bool) -> bool:
        """May this user start sessions with the profile?"""
        if self.admins_only and not is_admin:
            return False
        return self.users is None or user in self.users or is_admin

    def public(self, is_default: bool) -> dict[str, Any]:
        """What ``GET /api/profiles`` shows a user (no image pull secrets, no env values)."""
        return {
            "name": self.name,
            "display_name": self.display_name or self.name,
            "description": self.description,
            "cpu_request": self.cpu_request,
            "cpu_limit": self.cpu_limit,
            "memory_request": self.memory_request,
            "memory_limit": self.memory_limit,
            "gpu": self.gpu,
            "default": is_default,
        }


def check_profiles(profiles: list[KubernetesProfile]) -> None:
    """Names unique, at most one marked default (ValueError otherwise)."""
    seen: set[str] = set()
    for p in profiles:
        if p.name in seen:
            raise ValueError(f"two kubernetes_profiles are named '{p.name}'")
        seen.add(p.name)
    defaults = [p.name for p in profiles if p.default]
    if len(defaults) > 1:
        raise ValueError(f"more than one default profile: {', '.join(defaults)}")
