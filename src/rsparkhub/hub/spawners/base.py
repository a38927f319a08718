"""The spawner contract (after JupyterHub's): start / wait / poll / stop / adopt, with all
the state a spawner needs kept as JSON in the session row so another hub process can pick
the session up after a restart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class SessionSpec:
    session_id: str
    workspace_id: str
    user: str
    token: str  # the agent's secret for /agent/ws; never logged
    hub_agent_url: str  # ws://…/agent/ws
    session_dir: Path  # owned by the session: work/, runtime/, kernel pid file
    log_path: Path  # agent stdout/stderr, owned by the hub
    redial_timeout_s: float = 600
    max_file_bytes: int = 50 * 1024 * 1024
    languages: str | None = None  # comma-separated subset of r,python,bash
    # Kernels the agent starts before their first request (files.latest_language).
    prestart: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    # Host loopback TCP ports the session may reach (its own PostgreSQL, its user's Spark);
    # the hub's own port is always reachable. Nothing else on the host is.
    reach: tuple[int, ...] = ()
    # The profile the session runs with (None = the spawner's default); see profiles_for().
    profile: str | None = None
    # The owner's own uid/gid (users.uid; never 0). None: the spawner's configured default
    # (the Kubernetes spawner's kubernetes_session_uid).
    uid: int | None = None
    gid: int | None = None
    # Start-up progress for the session's clients ("pulling image …"); a spawner may call
    # it while the session starts. Spawners that start at once (local) ignore it.
    progress: Callable[[str], Awaitable[None]] | None = field(default=None, repr=False)
    # Directories of the host the session sees at the same path: its workspace's declared
    # environments (read-only) and package overlay (writable); hub/environments/.
    ro_binds: list[tuple[Path, str]] = field(default_factory=list)
    binds: list[tuple[Path, str]] = field(default_factory=list)
    # The workspaces whose package overlays the owner's own storage keeps (those they own or
    # are a member of); a spawner that keeps overlays on a user's volume removes the others
    # (Kubernetes). None: not known, remove nothing.
    keep_overlays: tuple[str, ...] | None = None
    # A pooled session (hub/sessions/warm.py): the agent starts its ``prestart`` kernels
    # and waits for ``hand_out`` (its token, the workspace's environment); ``late_dirs``
    # are where the hand-out binds the workspace's directories (its overlay).
    pool: bool = False
    late_dirs: tuple[str, ...] = ()

    @property
    def workdir(self) -> Path:
        return self.session_dir / "work"


class SpawnError(Exception):
    """A session could not be started; the message says why."""


class Spawner(Protocol):
    name: str

    async def start(self, spec: SessionSpec) -> dict[str, Any]:
        """Start the agent; return the state to keep in the session row."""

    async def wait(self, state: dict[str, Any]) -> tuple[int | None, str]:
        """Return (exit code or None if unknown, reason) once the session has ended."""

    async def poll(self, state: dict[str, Any]) -> bool:
        """True while the session's agent is alive."""

    async def stop(self, state: dict[str, Any], grace_s: float) -> int | None:
        """Make sure the session has ended (signal, then kill after ``grace_s``)."""

    def memory(self, state: dict[str, Any]) -> int | None:
        """Resident memory of the session (agent and kernels) in bytes, if known."""

    def describe(self) -> dict[str, Any]:
        """What ``doctor`` shows: sandboxing, limits."""

    # Optional hooks, looked up with getattr (the local spawner has none of them):
    #   profiles(user, is_admin) -> list[dict]   the profiles a user may pick (profiles_for)
    #   async reconcile(known_session_ids)       after adoption: remove sessions nobody owns
    #   async close()                            hub shutdown: stop watches, free clients
    #   start_timeout_s: float                   replaces session_start_timeout_s


LOCAL_PROFILE: dict[str, Any] = {
    "name": "local",
    "display_name": "This machine",
    "description": "A session on the hub's own machine.",
    "default": True,
}


def profiles_for(spawner: Any, user: str, is_admin: bool) -> list[dict[str, Any]]:
    """The profiles ``user`` may start sessions with; the first marked default is used when
    none is asked for. Spawners without profiles offer the single ``local`` one."""
    fn = getattr(spawner, "profiles", None)
    if fn is None:
        return [dict(LOCAL_PROFILE)]
    return list(fn(user, is_admin))
