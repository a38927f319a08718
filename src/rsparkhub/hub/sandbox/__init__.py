"""Sandboxes: every process that runs a user's code (sessions, their Spark servers) starts
here, under the user's own uid, in namespaces and a cgroup of its own (see launcher.py)."""

from rsparkhub.hub.sandbox.cgroups import Limits
from rsparkhub.hub.sandbox.child import Child
from rsparkhub.hub.sandbox.launcher import (
    Identity,
    Mode,
    Network,
    Sandboxes,
    SandboxSpec,
    sandboxes_for,
    scope_for,
)

__all__ = [
    "Child",
    "Identity",
    "Limits",
    "Mode",
    "Network",
    "SandboxSpec",
    "Sandboxes",
    "sandboxes_for",
    "scope_for",
]
