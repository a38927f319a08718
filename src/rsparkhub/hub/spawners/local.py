"""The local spawner: each session's agent runs on this machine in a sandbox of its own
(hub/sandbox/: the user's own uid, no capabilities, seccomp, its own network namespace
reaching only the hub and the user's services, a cgroup carrying the session's limits).

The session directory is the only writable place the agent shares with the host; the
token reaches the agent through an inherited pipe, never the environment. The agent is
started detached (new session, not killed with the hub) so that the next hub adopts it;
stopping or losing a session kills its whole cgroup, so no kernel outlives it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from rsparkhub.config import Settings
from rsparkhub.hub.listeners import SANDBOX_DIR, SOCKET_NAME, agent_socket_path
from rsparkhub.hub.sandbox import (
    Child,
    Identity,
    Limits,
    Network,
    Sandboxes,
    SandboxSpec,
    sandboxes_for,
)
from rsparkhub.hub.sandbox.disk import SessionDisks
from rsparkhub.hub.spawners.base import SessionSpec, SpawnError

_PASS_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "R_HOME", "JAVA_HOME")


class LocalSpawner:
    name = "local"

    def __init__(self, settings: Settings, sandboxes: Sandboxes | None = None) -> None:
        self.settings = settings
        self.sandboxes = sandboxes or sandboxes_for(settings)
        if settings.sandbox == "bwrap" and not self.sandboxes.bwrap:
            raise SpawnError("sandbox = 'bwrap' but bubblewrap (bwrap) is not installed")
        self._children: dict[int, Child] = {}
        self._handouts: dict[int, int] = {}  # a pooled agent's pid -> its hand-out pipe
        disk_mb = settings.session_disk_mb if self.sandboxes.bwrap else 0
        self.disks = SessionDisks(settings.data_dir / "session-disks", disk_mb)

    # ------------------------------------------------------------------ helpers
    @property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(
            memory_mb=s.session_memory_mb,
            pids=s.session_max_processes,
            cpu_weight=s.session_cpu_weight,
            cpu_quota=s.session_cpu_quota,
            tmp_mb=s.session_tmp_mb,
            cpu_seconds=s.session_cpu_seconds,
        )

    def describe(self) -> dict[str, Any]:
        s = self.settings
        iso = self.sandboxes.describe()
        return {
            "spawner": self.name,
            "sandbox": iso["sandbox"],
            "sandbox_reason": (
                "bwrap found at " + self.sandboxes.bwrap
                if self.sandboxes.bwrap
                else "bubblewrap is not installed or sandbox = 'none'"
            ),
            **iso,
            "session_network": s.session_network,
            "memory_mb": s.session_memory_mb,
            "cpu_seconds": s.session_cpu_seconds,
            "max_processes": s.session_max_processes,
            "tmp_mb": s.session_tmp_mb,
            **self.disks.describe(),
            # the warm pool (hub/sessions/warm.py): off at 0, or when it cannot work here
            "session_pool_size": 0 if self.pool_supported else s.session_pool_size,
            "session_pool_reason": self.pool_supported,
        }

    def _env(self, spec: SessionSpec) -> dict[str, str]:
        # A fresh environment: nothing of the hub's (database URL, secrets) leaks in.
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.setdefault("LANG", "C.UTF-8")
        env["HOME"] = str(spec.session_dir / "home")
        env["USER"] = spec.user
        env["RSPARKHUB_SESSION_ID"] = spec.session_id
        env["RSPARKHUB_WORKSPACE_ID"] = spec.workspace_id
        env["PYTHONUNBUFFERED"] = "1"
        env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
        if self.settings.session_memory_mb:
            env["RSPARKHUB_MEMORY_LIMIT_MB"] = str(self.settings.session_memory_mb)
        env.update(spec.env)
        return env

    def _hub_socket(self) -> Path | None:
        """The hub's unix socket for agents, when this hub serves one (``rsparkhub serve``
        does; hub/listeners.py) and sessions are sandboxed."""
        path = agent_socket_path(self.settings.data_dir)
        if self.sandboxes.bwrap and path.is_socket():
            return path
        return None

    def _agent_argv(self, spec: SessionSpec, token_fd: int) -> list[str]:
        url = spec.hub_agent_url
        if self.sandboxes.mode.network == "pasta":
            # Inside its own network namespace the hub is at 127.0.0.1 (a pasta forward).
            url = f"ws://127.0.0.1:{self._hub_port(spec)}/agent/ws"
        extra: list[str] = []
        if self._hub_socket() is not None:
            url = "ws://localhost/agent/ws"
            extra = ["--hub-socket", f"{SANDBOX_DIR}/{SOCKET_NAME}"]
        argv = [
            sys.executable, "-m", "rsparkhub.agent",
            "--hub-url", url,
            "--session-id", spec.session_id,
            "--workdir", str(spec.workdir),
            "--token-fd", str(token_fd),
            *extra,
            "--redial-timeout", str(spec.redial_timeout_s),
            "--max-file-bytes", str(spec.max_file_bytes),
        ]  # fmt: skip
        if spec.languages:
            argv += ["--languages", spec.languages]
        if spec.prestart:
            argv += ["--prestart", ",".join(spec.prestart)]
        if spec.pool:
            argv.append("--pool")
        return argv

    @property
    def pool_supported(self) -> str | None:
        """Why this spawner cannot keep a warm pool (hub/sessions/warm.py), or None: a
        pooled sandbox gets its workspace's overlay bound in at hand-out, which takes a
        root hub (or no sandbox at all)."""
        if self.sandboxes.bwrap and not self.sandboxes.root:
            return "an unprivileged hub cannot bind a workspace into a running sandbox"
        return None

    async def hand_out(self, state: dict[str, Any], spec: SessionSpec) -> None:
        """Give the pooled session ``state`` (started with ``spec``'s id and token) to
        ``spec``'s workspace: bind its directories into the sandbox, then write the agent's
        hand-out (agent/handout.py): the token, the environment a cold start of ``spec``
        would have had, the kernels to start. Raises SpawnError."""
        fd = self._handouts.pop(int(state.get("pid") or 0), None)
        if fd is None or not self._alive(state):
            raise SpawnError("the pooled session is gone")
        identity = Identity(spec.uid, spec.gid if spec.gid is not None else spec.uid) \
            if spec.uid is not None else self.sandboxes.identity_for_hub()  # fmt: skip
        line = json.dumps(
            {"token": spec.token, "env": self._env(spec), "prestart": list(spec.prestart)}
        )
        try:
            if state.get("cgroup"):
                binds = [(s, d, False) for s, d in spec.binds]
                for src, dest, ro in [*binds, *((s, d, True) for s, d in spec.ro_binds)]:
                    await asyncio.to_thread(
                        self.sandboxes.late_bind, state["cgroup"], src, dest, identity, ro
                    )
            await asyncio.to_thread(_write_all, fd, line.encode() + b"\n")
        except (OSError, ValueError) as exc:
            raise SpawnError(f"could not hand the pooled session out: {exc}") from exc
        finally:
            os.close(fd)

    @staticmethod
    def _hub_port(spec: SessionSpec) -> int:
        from urllib.parse import urlsplit

        return urlsplit(spec.hub_agent_url).port or 80

    @staticmethod
    def cgroup_name(session_id: str) -> str:
        return f"session-{session_id}"

    # ------------------------------------------------------------------ contract
    async def start(self, spec: SessionSpec) -> dict[str, Any]:
        name = self.cgroup_name(spec.session_id)
        try:  # the session's directory on a disk of its own (root hub; sandbox/disk.py)
            await asyncio.to_thread(self.disks.attach, name, spec.session_dir)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise SpawnError(f"could not make the session's disk: {_why(exc)}") from exc
        for d in (spec.workdir, spec.session_dir / "home", spec.session_dir / "runtime"):
            d.mkdir(parents=True, exist_ok=True)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        identity = (
            Identity(spec.uid, spec.gid if spec.gid is not None else spec.uid)
            if spec.uid is not None
            else self.sandboxes.identity_for_hub()
        )
        # The token goes through a pipe the agent reads once at start (never the env); a
        # pooled agent reads its hand-out (token included) there later: ``hand_out``.
        r, w = os.pipe()
        if spec.pool:
            os.set_blocking(w, True)
        else:
            os.write(w, spec.token.encode() + b"\n")
            os.close(w)
        log_fd = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        socket = self._hub_socket()
        hub_dir = [(socket.parent, SANDBOX_DIR)] if socket is not None else []
        hub_port = () if socket is not None else (self._hub_port(spec),)
        sbx = SandboxSpec(
            name=name,
            identity=identity,
            argv=self._agent_argv(spec, r),
            env=self._env(spec),
            chdir=str(spec.workdir),
            binds=[(spec.session_dir, str(spec.session_dir)), *spec.binds],
            ro_binds=self.sandboxes.runtime_binds() + hub_dir + spec.ro_binds,
            masked=[str(self.settings.data_dir.resolve())],
            network=Network(
                # The hub's port only when the agent cannot use the hub's unix socket.
                to_host=tuple(sorted({*hub_port, *spec.reach})),
                outbound=self.settings.session_network == "internet",
            ),
            limits=self.limits,
            stdout=log_fd,
            pass_fds=(r,),
            late_dirs=spec.late_dirs if self.sandboxes.bwrap else (),
        )
        try:
            proc = await self.sandboxes.spawn(sbx)
        except (OSError, ValueError) as exc:
            await asyncio.to_thread(self.disks.detach, name)
            if spec.pool:
                os.close(w)
            raise SpawnError(f"could not start the session agent: {exc}") from exc
        finally:
            os.close(r)
            os.close(log_fd)
        self._children[proc.pid] = proc
        if spec.pool:
            self._handouts[proc.pid] = w
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            create_time = 0.0
        return {
            "pid": proc.pid,
            "pgid": proc.pid,
            "create_time": create_time,
            "session_dir": str(spec.session_dir),
            "sandbox": bool(self.sandboxes.bwrap),
            "cgroup": name if self.sandboxes.bwrap else None,  # the sandbox's name
            "uid": identity.uid,
        }

    def _alive(self, state: dict[str, Any]) -> bool:
        pid = int(state.get("pid") or 0)
        if pid <= 0:
            return False
        child = self._children.get(pid)
        if child is not None:
            return child.returncode is None
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - float(state.get("create_time") or 0)) > 1.0:
                return False  # the pid was reused
            return bool(p.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    async def poll(self, state: dict[str, Any]) -> bool:
        return self._alive(state)

    async def reconcile(self, known_session_ids: set[str]) -> None:
        """After adoption: kill what is left of sessions no live row owns (a hub that
        died between a session's end and its clean-up)."""
        for name in self.sandboxes.names():
            if name.startswith("session-") and name[len("session-") :] not in known_session_ids:
                await asyncio.to_thread(self.sandboxes.kill, name)
        for name in self.disks.names():
            if name[len("session-") :] not in known_session_ids:
                await asyncio.to_thread(self.disks.detach, name)

    def memory(self, state: dict[str, Any]) -> int | None:
        """RSS of every process of the session (agent, kernels, what they started)."""
        if not self._alive(state):
            return None
        if state.get("cgroup") and self.sandboxes.cgroups.version != "none":
            return self.sandboxes.memory(state["cgroup"])
        try:
            root = psutil.Process(int(state["pid"]))
            procs = [root, *root.children(recursive=True)]
        except (psutil.Error, KeyError, ValueError):
            return None
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    async def wait(self, state: dict[str, Any]) -> tuple[int | None, str]:
        pid = int(state.get("pid") or 0)
        child = self._children.get(pid)
        if child is not None:
            code = await child.wait()
            self._children.pop(pid, None)
            why = self._oom_reason(state)
            await self._kill_all(state)
            return code, _describe_exit(code) + why
        while self._alive(state):  # adopted: not our child, so poll its pid
            await asyncio.sleep(0.5)
        why = self._oom_reason(state)
        await self._kill_all(state)
        return None, "the session's agent exited while this hub was not its parent" + why

    def _oom_reason(self, state: dict[str, Any]) -> str:
        """The kernel's OOM count of the session's cgroup names a memory kill as such."""
        name = state.get("cgroup")
        if not name or not self.sandboxes.oom_kills(name):
            return ""
        return (
            f": the session ran out of memory (its limit is {self.settings.session_memory_mb} "
            "MiB, session_memory_mb)"
        )

    async def stop(self, state: dict[str, Any], grace_s: float) -> int | None:
        """SIGTERM the agent (it shuts its kernels down and exits 0), then kill the whole
        session: its cgroup (or, without one, its process tree and group)."""
        pid = int(state.get("pid") or 0)
        if self._alive(state):
            for target in self._agent_pids(state):
                _kill(target, signal.SIGTERM)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace_s
            while self._alive(state) and loop.time() < deadline:
                await asyncio.sleep(0.1)
        await self._kill_all(state)
        code: int | None = None
        fd = self._handouts.pop(pid, None)
        if fd is not None:
            os.close(fd)
        child = self._children.pop(pid, None)
        if child is not None:
            code = await child.wait()
        return code

    async def _kill_all(self, state: dict[str, Any]) -> None:
        name = state.get("cgroup")
        if name:
            await asyncio.to_thread(self.sandboxes.kill, name)
            await asyncio.to_thread(self.disks.detach, name)
            if self.sandboxes.cgroups.version != "none":
                return
        pid = int(state.get("pid") or 0)
        if pid > 0 and self._alive(state):
            for target in _descendants(pid):
                _kill(target, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(state.get("pgid") or pid), signal.SIGKILL)

    def _agent_pids(self, state: dict[str, Any]) -> list[int]:
        """The agent process itself (inside the sandbox it is a grandchild of pasta)."""
        pid = int(state.get("pid") or 0)
        members = (
            self.sandboxes.pids(state["cgroup"])
            if state.get("cgroup") and self.sandboxes.cgroups.version != "none"
            else _descendants(pid)
        )
        found = []
        for p in members:
            try:
                cmd = psutil.Process(p).cmdline()
            except psutil.Error:
                continue
            if "rsparkhub.agent" in cmd and not cmd[0].endswith(("bwrap", "pasta", "setpriv")):
                found.append(p)
        return found or [pid]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _descendants(pid: int) -> list[int]:
    try:
        return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return [pid]


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code == 0:
        return "exited normally"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"killed by signal {name}"
    if code == 3:
        return "the agent lost the hub and gave up re-dialling"
    if 128 < code < 128 + 65:  # bubblewrap reports a child killed by signal N as 128+N
        try:
            return f"killed by signal {signal.Signals(code - 128).name}"
        except ValueError:
            pass
    return f"exited with code {code}"


def _why(exc: OSError | subprocess.CalledProcessError) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        err = (exc.stderr or b"").decode(errors="replace").strip()
        return f"{exc.cmd[0]} failed: {err or f'exit {exc.returncode}'}"
    return str(exc)
