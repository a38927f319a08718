"""The local spawner: each session's agent is a subprocess in its own process group, with
resource limits, sandboxed by bubblewrap when it is installed.

The sandbox shows the system read-only, hides the hub's data directory (database, blobs,
other sessions) behind an empty tmpfs, and makes only the session's own directory writable.
The agent is started detached (new session, no --die-with-parent) so that it outlives a hub
restart and the next hub adopts it."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import psutil

import rsparkhub
from rsparkhub.hub.spawners.base import SessionSpec, SpawnError

_PASS_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "R_HOME", "JAVA_HOME")


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


class LocalSpawner:
    name = "local"

    def __init__(
        self,
        data_dir: Path,
        sandbox: str = "auto",
        memory_mb: int = 0,
        cpu_seconds: int = 0,
        max_processes: int = 0,
    ) -> None:
        self.data_dir = data_dir
        self.memory_mb = memory_mb
        self.cpu_seconds = cpu_seconds
        self.max_processes = max_processes
        bwrap = bwrap_path()
        if sandbox == "bwrap" and not bwrap:
            raise SpawnError("sandbox = 'bwrap' but bubblewrap (bwrap) is not installed")
        self.bwrap = bwrap if sandbox in ("auto", "bwrap") else None
        self._children: dict[int, asyncio.subprocess.Process] = {}

    # ------------------------------------------------------------------ helpers
    def describe(self) -> dict[str, Any]:
        return {
            "spawner": self.name,
            "sandbox": "bubblewrap" if self.bwrap else "none",
            "sandbox_reason": (
                "bwrap found at " + self.bwrap
                if self.bwrap
                else "bubblewrap is not installed or sandbox = 'none'"
            ),
            "memory_mb": self.memory_mb,
            "cpu_seconds": self.cpu_seconds,
            "max_processes": self.max_processes,
        }

    def _env(self, spec: SessionSpec) -> dict[str, str]:
        # A fresh environment: nothing of the hub's (database URL, secrets) leaks in.
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.setdefault("LANG", "C.UTF-8")
        env["HOME"] = str(spec.session_dir / "home")
        env["USER"] = spec.user
        env["RSPARKHUB_SESSION_TOKEN"] = spec.token
        env["RSPARKHUB_SESSION_ID"] = spec.session_id
        env["RSPARKHUB_WORKSPACE_ID"] = spec.workspace_id
        env["PYTHONUNBUFFERED"] = "1"
        env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
        env.update(spec.env)
        return env

    def _command(self, spec: SessionSpec) -> list[str]:
        agent = [
            sys.executable,
            "-m",
            "rsparkhub.agent",
            "--hub-url",
            spec.hub_agent_url,
            "--session-id",
            spec.session_id,
            "--workdir",
            str(spec.workdir),
            "--redial-timeout",
            str(spec.redial_timeout_s),
            "--max-file-bytes",
            str(spec.max_file_bytes),
        ]
        if spec.languages:
            agent += ["--languages", spec.languages]
        if not self.bwrap:
            return agent
        sd = str(spec.session_dir)
        # Python and this package must stay visible even when they live under a path the
        # sandbox masks (a checkout or venv in /tmp, say): bind them back read-only.
        masked = (Path("/tmp"), self.data_dir)
        needed = sorted(
            {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
            | {Path(rsparkhub.__file__).resolve().parent.parent}
        )
        rebind: list[str] = []
        for path in needed:
            if any(path == m or m in path.parents for m in masked):
                rebind += ["--ro-bind", str(path), str(path)]
        cmd = [
            self.bwrap,
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",
            "--tmpfs", str(self.data_dir),
            "--bind", sd, sd,
            "--remount-ro", str(self.data_dir),
            *rebind,
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--new-session",
            "--chdir", str(spec.workdir),
        ]  # fmt: skip
        return [*cmd, "--", *agent]

    def _limits(self) -> None:  # runs in the child between fork and exec
        if self.memory_mb:
            n = self.memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (n, n))
        if self.cpu_seconds:
            resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds))
        if self.max_processes:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.max_processes, self.max_processes))

    # ------------------------------------------------------------------ contract
    async def start(self, spec: SessionSpec) -> dict[str, Any]:
        for d in (spec.workdir, spec.session_dir / "home", spec.session_dir / "runtime"):
            d.mkdir(parents=True, exist_ok=True)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(spec.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._command(spec),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self._env(spec),
                cwd=str(spec.workdir),
                start_new_session=True,
                preexec_fn=self._limits,
            )
        except OSError as exc:
            raise SpawnError(f"could not start the session agent: {exc}") from exc
        finally:
            log.close()
        self._children[proc.pid] = proc
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            create_time = 0.0
        return {
            "pid": proc.pid,
            "pgid": proc.pid,
            "create_time": create_time,
            "session_dir": str(spec.session_dir),
            "sandbox": bool(self.bwrap),
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
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    async def poll(self, state: dict[str, Any]) -> bool:
        return self._alive(state)

    def memory(self, state: dict[str, Any]) -> int | None:
        """RSS of the session's process tree (bwrap, agent, kernels)."""
        if not self._alive(state):
            return None
        try:
            root = psutil.Process(int(state["pid"]))
            procs = [root, *root.children(recursive=True)]
        except (psutil.Error, KeyError, ValueError):
            return None
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return total

    async def wait(self, state: dict[str, Any]) -> tuple[int | None, str]:
        pid = int(state.get("pid") or 0)
        child = self._children.get(pid)
        if child is not None:
            code = await child.wait()
            self._children.pop(pid, None)
            self._cleanup_orphans(state)
            return code, _describe_exit(code)
        while self._alive(state):  # adopted: not our child, so poll its pid
            await asyncio.sleep(0.5)
        self._cleanup_orphans(state)
        return None, "the session's agent exited while this hub was not its parent"

    async def stop(self, state: dict[str, Any], grace_s: float) -> int | None:
        """SIGTERM the agent (it shuts its kernels down and exits 0), then SIGKILL."""
        pid = int(state.get("pid") or 0)
        pgid = int(state.get("pgid") or 0)
        if self._alive(state):
            for target in self._agent_pids(pid):
                _kill(target, signal.SIGTERM)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace_s
            while self._alive(state) and loop.time() < deadline:
                await asyncio.sleep(0.1)
            if self._alive(state):
                # Killing the sandbox's init (bwrap inside the PID namespace) takes every
                # process of the session with it.
                for target in self._descendants(pid):
                    _kill(target, signal.SIGKILL)
                if pgid > 0:
                    _killpg(pgid, signal.SIGKILL)
        code: int | None = None
        child = self._children.pop(pid, None)
        if child is not None:
            code = await child.wait()
        self._cleanup_orphans(state)
        return code

    @staticmethod
    def _descendants(pid: int) -> list[int]:
        try:
            return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return [pid]

    def _agent_pids(self, pid: int) -> list[int]:
        """The agent process itself (inside the sandbox it is a grandchild of bwrap)."""
        found = []
        for p in self._descendants(pid):
            try:
                cmd = psutil.Process(p).cmdline()
            except psutil.Error:
                continue
            if "rsparkhub.agent" in cmd and not cmd[0].endswith("bwrap"):
                found.append(p)
        return found or [pid]

    def _cleanup_orphans(self, state: dict[str, Any]) -> None:
        """Kernels run in their own process groups; if the agent was killed they may
        linger (only without the sandbox, whose PID namespace takes them down)."""
        pidfile = Path(state.get("session_dir", "")) / "agent-kernels.pid"
        try:
            pids = [int(x) for x in pidfile.read_text().split()]
        except (OSError, ValueError):
            return
        for pid in pids:
            try:
                p = psutil.Process(pid)
                # Only a kernel of this session: its connection file is in our runtime dir.
                if state["session_dir"] not in " ".join(p.cmdline()):
                    continue
                if _is_group_leader(pid):
                    os.killpg(pid, signal.SIGKILL)
                else:
                    p.kill()
            except (psutil.Error, ProcessLookupError, PermissionError):
                pass


def _is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


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
