"""The session's environment as run records name it: OS, and per language its version and
every installed package version (``runs_protocol`` has the canonical form and the id).

``EnvironmentProbe`` asks the kernels' own interpreters — the kernelspec's ``R`` and
``python``, with the kernels' environment and working directory, so ``.libPaths()`` and
``sys.path`` are the kernels' — in child processes (about 0.2 s for R, 0.05 s for Python),
never in the kernels themselves (a busy kernel must not delay a run's record). The result is
kept with a fingerprint of the library directories (their mtimes: installing or removing a
package changes them), so a snapshot is taken once per session and again only after
packages changed, not per run. A package upgraded inside a running Python kernel that had
already imported the old version is recorded as installed, not as loaded.

``EnvironmentAnnouncer`` watches the agent's own events: when a ``run``/``source``/``render``
request starts (its ``input`` event) it emits an ``environment`` event naming the snapshot,
with the snapshot itself the first time this agent names it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager

from rsparkhub import protocol as P
from rsparkhub.agent.launch import KERNEL_NAMES
from rsparkhub.runs_protocol import EnvironmentEvent, environment_id

log = logging.getLogger("rsparkhub.agent.environment")

PROBE_TIMEOUT_S = 60.0
RECORDED_MODES = ("run", "source", "render")

_PYTHON_PROBE = r"""
import importlib.metadata as m, json, os, platform, sys
seen = {}
for d in m.distributions():
    name = d.metadata["Name"]
    if name and name.lower() not in seen:  # the first on sys.path wins, as import does
        seen[name.lower()] = {"name": name, "version": d.version,
                              "library": os.path.normpath(str(d.locate_file("")))}
print(json.dumps({
    "version": platform.python_version(),
    "implementation": platform.python_implementation(),
    "executable": sys.executable,
    "paths": [p for p in sys.path if os.path.isabs(p) and os.path.isdir(p)],
    "packages": sorted(seen.values(), key=lambda p: p["name"].lower()),
}))
"""

_R_PROBE = r"""
ip <- installed.packages(fields = character(0))
ip <- ip[!duplicated(ip[, "Package"]), , drop = FALSE]
cat("version\t", R.version$major, ".", R.version$minor, "\n", sep = "")
cat("version_string\t", R.version.string, "\n", sep = "")
cat(paste0("library\t", .libPaths()), sep = "\n")
cat(paste0("package\t", ip[, "Package"], "\t", ip[, "Version"], "\t", ip[, "LibPath"]),
    sep = "\n")
"""


def _os_info() -> dict[str, Any]:
    name = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {"name": name, "kernel": platform.release(), "machine": platform.machine()}


def _interpreter(language: str) -> str | None:
    try:
        argv = KernelSpecManager().get_kernel_spec(KERNEL_NAMES[language]).argv
    except Exception:  # noqa: BLE001 - no kernelspec: nothing to probe
        return None
    return argv[0] if argv else None


def _parse_r(out: str) -> dict[str, Any]:
    info: dict[str, Any] = {"libraries": [], "packages": []}
    for line in out.splitlines():
        key, _, rest = line.partition("\t")
        if key in ("version", "version_string"):
            info[key] = rest
        elif key == "library":
            info["libraries"].append(rest)
        elif key == "package":
            name, version, lib = (rest.split("\t") + ["", ""])[:3]
            info["packages"].append({"name": name, "version": version, "library": lib})
    info["packages"].sort(key=lambda p: p["name"].lower())
    return info


class EnvironmentProbe:
    def __init__(
        self, languages: list[P.Language], env: Callable[[], dict[str, str]], cwd: Path
    ) -> None:
        self.languages = languages
        self.env = env
        self.cwd = cwd
        self._lock = asyncio.Lock()
        self._snapshot: dict[str, Any] | None = None
        self._id = ""
        self._dirs: list[str] = []
        self._stamp: tuple[int, ...] = ()

    def cached(self) -> dict[str, Any] | None:
        """The last snapshot taken, without looking whether it is still current."""
        return self._snapshot

    async def current(self) -> tuple[str, dict[str, Any]]:
        """The snapshot's id and content, taken again only if a library directory changed."""
        async with self._lock:
            if self._snapshot is not None:
                stamp = await asyncio.to_thread(_stamp, self._dirs)
                if stamp == self._stamp:
                    return self._id, self._snapshot
            snapshot = await self._take()
            self._dirs = sorted(
                {
                    d
                    for info in snapshot["languages"].values()
                    for d in (info.get("paths") or info.get("libraries") or [])
                }
            )
            self._stamp = await asyncio.to_thread(_stamp, self._dirs)
            self._snapshot, self._id = snapshot, environment_id(snapshot)
            return self._id, snapshot

    async def _take(self) -> dict[str, Any]:
        probes = {"r": self._r, "python": self._python, "bash": self._bash}
        langs = [x for x in self.languages if x in probes]
        results = await asyncio.gather(*(probes[x]() for x in langs), return_exceptions=True)
        languages: dict[str, Any] = {}
        for lang, result in zip(langs, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("the %s environment could not be read: %s", lang, result)
                languages[lang] = {"error": str(result) or type(result).__name__}
            elif result is not None:
                languages[lang] = result
        return {"os": await asyncio.to_thread(_os_info), "languages": languages}

    async def _output(self, *argv: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.cwd,
            env=self.env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"{argv[0]} did not answer in {PROBE_TIMEOUT_S:.0f} s") from None
        if proc.returncode != 0:
            raise RuntimeError(err.decode(errors="replace").strip()[-500:] or "failed")
        return out.decode(errors="replace")

    async def _python(self) -> dict[str, Any] | None:
        exe = await asyncio.to_thread(_interpreter, "python")
        if exe is None:
            return None
        info: dict[str, Any] = json.loads(await self._output(exe, "-c", _PYTHON_PROBE))
        return info

    async def _r(self) -> dict[str, Any] | None:
        exe = await asyncio.to_thread(_interpreter, "r")
        if exe is None:
            return None
        out = await self._output(exe, "--no-restore", "--no-save", "--slave", "-e", _R_PROBE)
        info = _parse_r(out)
        info["executable"] = shutil.which(exe, path=self.env().get("PATH")) or exe
        return info

    async def _bash(self) -> dict[str, Any]:
        out = await self._output("bash", "-c", 'printf %s "$BASH_VERSION"')
        return {"version": out.strip()}


def _stamp(dirs: list[str]) -> tuple[int, ...]:
    out: list[int] = []
    for d in dirs:
        try:
            out.append(os.stat(d).st_mtime_ns)
        except OSError:
            out.append(-1)
    return tuple(out)


class EnvironmentAnnouncer:
    """Names the environment of every recorded request in the stream (see module doc)."""

    def __init__(self, probe: EnvironmentProbe, emit: Callable[[Any], int]) -> None:
        self.probe = probe
        self.emit = emit
        self._sent: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def warm(self) -> None:
        """Take the first snapshot now, so the first run does not wait for it."""
        self._spawn(self._warm(), "environment-warm")

    def seen(self, event: Any) -> None:
        """Called with every event the agent emits."""
        if isinstance(event, P.InputEvent) and event.mode in RECORDED_MODES:
            self._spawn(self._announce(event.request_id), f"environment-{event.request_id}")

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _warm(self) -> None:
        try:
            await self.probe.current()
        except Exception:  # noqa: BLE001 - the next run tries again
            log.exception("reading the session's environment failed")

    async def _announce(self, request_id: str) -> None:
        try:
            env_id, snapshot = await self.probe.current()
        except Exception:  # noqa: BLE001 - the run is recorded without its environment
            log.exception("reading the session's environment failed")
            return
        content = None if env_id in self._sent else snapshot
        self._sent.add(env_id)
        self.emit(EnvironmentEvent(request_id=request_id, environment_id=env_id, content=content))
