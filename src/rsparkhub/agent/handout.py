"""A pooled agent (``--pool``): started ahead for one user and warmed (its imports done,
the pool's kernels started), then handed out to one session of that user's workspace.

The hub's warm pool (hub/sessions/warm.py) starts the agent in its sandbox with the
session id it will have, but without a token and without a workspace: it dials nobody.
The hand-out is one JSON line on the pipe the token comes through otherwise
(``--token-fd``)::

    {"token": "...", "env": {"RSPARKHUB_WORKSPACE_ID": "...", ...}, "prestart": ["r"]}

``env`` is what the hub would have put into a cold session's environment for that
workspace and is not in the pooled one's (its id, its package overlay, Spark's preload).
The agent adds it to its own environment, then *resets* every kernel it started: the
kernel's process environment, and what the kernel derived from it at start (Python's
``sys.path`` from PYTHONPATH, R's library paths from R_LIBS), so a pooled kernel behaves as
one started cold for the workspace. Then it dials the hub as any agent does. End of file
on the pipe (the hub dropped the entry, or died) ends the agent cleanly.

A kernel that read files of the workspace at its start cannot be reset: an R kernel of a
workspace with ``.Rprofile`` or a saved image (``.RData``) is restarted once the files
are in place (``restart_for``).

Owns: the hand-out message and the kernel reset. Must not: dial the hub before the
hand-out, or keep the token anywhere but the link.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from rsparkhub.protocol import LANGUAGES, Language

MAX_LINE = 256 * 1024
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Files of the workspace an R kernel reads when it starts: such a kernel is started anew.
R_STARTUP_FILES = (".Rprofile", ".RData")


class HandoutError(ValueError):
    """The hand-out line is not what the hub sends."""


@dataclass
class Handout:
    token: str
    env: dict[str, str] = field(default_factory=dict)
    prestart: list[Language] = field(default_factory=list)


def parse(line: bytes) -> Handout:
    """The hand-out, validated: a token, string variables with valid names, known
    languages."""
    try:
        raw = json.loads(line)
    except ValueError as exc:
        raise HandoutError(f"the hand-out is not JSON: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("token"), str) or not raw["token"]:
        raise HandoutError("the hand-out has no token")
    env = raw.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and _ENV_NAME.fullmatch(k) and isinstance(v, str) and "\0" not in v
        for k, v in env.items()
    ):
        raise HandoutError("the hand-out's env must map variable names to strings")
    prestart = raw.get("prestart", [])
    if not isinstance(prestart, list) or not all(x in LANGUAGES for x in prestart):
        raise HandoutError(f"the hand-out's prestart must name languages of {LANGUAGES}")
    return Handout(token=raw["token"], env=dict(env), prestart=list(prestart))


async def read(fd: int, stop: asyncio.Event) -> Handout | None:
    """Wait for the hand-out on ``fd`` (closed afterwards); None at end of file or when
    ``stop`` is set first."""

    def blocking() -> bytes:
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_LINE:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if chunk.endswith(b"\n"):
                break
        return b"".join(chunks)

    reading = asyncio.ensure_future(asyncio.to_thread(blocking))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not reading.done():
        return None  # the thread stays blocked in read(); the process is ending
    os.close(fd)
    line = reading.result()
    return parse(line) if line.strip() else None


def changes(
    before: Mapping[str, str], after: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The variables ``after`` sets differently from ``before``, and those it drops."""
    changed = {k: v for k, v in after.items() if before.get(k) != v}
    removed = sorted(k for k in before if k not in after)
    return changed, removed


def reset_code(language: Language, changed: Mapping[str, str], removed: list[str]) -> str:
    """Code that gives a running kernel the environment it would have had from its start
    (run silently, before any of the user's code)."""
    if language == "python":
        payload = json.dumps({"changed": dict(changed), "removed": removed})
        return (
            f"__import__('rsparkhub.agent.pykernel_handout', fromlist=['reset']).reset({payload!r})"
        )
    if language == "r":
        from rsparkhub.agent.modes import r_string

        sets = ", ".join(f"{r_string(k)} = {r_string(v)}" for k, v in changed.items())
        lines = ["local({"]
        if changed:
            lines.append(f"  do.call(Sys.setenv, list({sets}))")
        if removed:
            lines.append(f"  Sys.unsetenv(c({', '.join(map(r_string, removed))}))")
        # R_LIBS is read once at start: its directories go in front, as they would have
        lines.append(
            "  libs <- strsplit(Sys.getenv('R_LIBS'), ':', fixed = TRUE)[[1]]\n"
            "  libs <- libs[nzchar(libs) & dir.exists(libs)]\n"
            "  if (length(libs)) .libPaths(unique(c(libs, .libPaths())))"
        )
        lines.append("})")
        return "\n".join(lines)
    parts = [f"export {k}={shlex.quote(v)}" for k, v in changed.items()]
    parts += [f"unset {k}" for k in removed]
    return "\n".join(parts) or ":"


def restart_for(language: str, manifest: Mapping[str, str]) -> bool:
    """Whether a pooled kernel of ``language`` must start anew for this workspace: R reads
    ``.Rprofile`` and restores ``.RData`` only when it starts."""
    return language == "r" and any(name in manifest for name in R_STARTUP_FILES)
