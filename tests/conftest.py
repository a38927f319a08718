"""Shared fixtures: a real hub process (``rsparkhub serve``) on a free loopback port with
its own data directory, users with API tokens, and an optional real PostgreSQL backend.

The hub runs as a subprocess (not in-process) so that tests can kill and restart it the
way an operator's machine would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rsparkhub.hub.supervised import free_port

sys.path.insert(0, str(Path(__file__).parent))

from pg_fixture import pg_database, pg_server  # noqa: E402,F401

VENV_BIN = Path(sys.executable).parent
RSPARKHUB = str(VENV_BIN / "rsparkhub")
PASSWORD = "correct-horse-battery"


class HubProcess:
    """A running ``rsparkhub serve``; ``restart()`` keeps the data directory."""

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, run_as: int | None = None
    ) -> None:
        self.data_dir = data_dir
        # run_as: a uid for a hub that is not root (a laptop user's hub); see as_user().
        self.prefix = as_user(run_as) if run_as is not None else []
        self.run_as = run_as
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Per-user PostgreSQL databases and Spark are off unless a test asks for them (env),
        # which keeps the rest of the suite from starting a PostgreSQL or Spark server.
        self.env = {
            **os.environ,
            "RSPARKHUB_IDLE_TIMEOUT_S": "3600",
            "RSPARKHUB_USER_DATABASES": "off",
            "RSPARKHUB_SPARK": "off",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "hub-test.log"
        self.first_start_output = ""

    def cli(self, *args: str, stdin: str | None = None) -> str:
        out = subprocess.run(
            [*self.prefix, RSPARKHUB, *args, "--data-dir", str(self.data_dir)],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
        if out.returncode != 0:
            raise AssertionError(f"rsparkhub {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def start(self) -> HubProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115
        if self.run_as is not None:
            for d in (self.data_dir.parent, self.data_dir, self.log_path):
                os.chown(d, self.run_as, self.run_as)
        self.proc = subprocess.Popen(
            [
                *self.prefix,
                RSPARKHUB,
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"hub exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("hub did not become healthy in 60 s")
        if not self.first_start_output:
            self.first_start_output = self.log_path.read_text()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        """Stop the hub and the sessions it started (they outlive a hub by design)."""
        self.stop()
        _kill_session_processes(self.data_dir)
        remove_sandboxes(self.data_dir)

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def login_link(self) -> str:
        """The first start's one-time admin link. The hub's output is a log file here, not
        a terminal, so the hub wrote the link to DATA_DIR/first-login-link instead."""
        return (self.data_dir / "first-login-link").read_text().strip()

    def make_user(self, name: str, admin: bool = False) -> str:
        """Create a user with PASSWORD and return an API token for it."""
        self.cli("user", "add", name, *(["--admin"] if admin else []), stdin=PASSWORD + "\n")
        return self.cli("token", "create", name).strip()

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )


def as_user(uid: int) -> list[str]:
    """An argv prefix running a command as ``uid`` with no capabilities: the hub a person
    starts on their laptop. Python (pyenv) or the checkout may live under /root on some
    machines, which such a user cannot reach, so the command runs in a mount namespace of
    its own where /root shows only those directories (the hub's code plays no part)."""
    repo = Path(__file__).resolve().parent.parent
    hidden = [p for p in (Path(sys.base_prefix).resolve(), repo) if str(p).startswith("/root/")]
    # the directories made below must be reachable by uid whatever this process's umask
    # (a hub built in-process, e.g. test_authz's create_app, sets the hub's umask 077)
    script = "set -e\numask 022\n"
    if hidden:
        for i, p in enumerate(hidden):
            script += f'k{i}=$(mktemp -d); mount --bind "{p}" "$k{i}"\n'
        script += "mount -t tmpfs -o mode=755 tmpfs /root\n"
        for i, p in enumerate(hidden):
            script += f'mkdir -p "{p}"; mount --bind "$k{i}" "{p}"\n'
    script += f'exec setpriv --reuid={uid} --regid={uid} --clear-groups --inh-caps=-all -- "$@"\n'
    return ["env", "HOME=/tmp", "unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", script, "sh"]  # fmt: skip


def remove_sandboxes(data_dir: Path) -> None:
    """Remove what the sandboxes of the hub of data_dir left when its sessions were not
    stopped through the hub: their cgroups, their bind-mount views under /run, its users'
    Spark servers' views of session directories (which keep a session's disk busy) and
    the disks (loop mounts)."""
    from rsparkhub.hub import spark_embedded_files
    from rsparkhub.hub.sandbox import Sandboxes, scope_for
    from rsparkhub.hub.sandbox.disk import SessionDisks

    sandboxes = Sandboxes(scope=scope_for(data_dir))
    for name in sandboxes.names():
        sandboxes.kill(name)
    users = data_dir / "spark" / "users"
    if users.is_dir() and os.geteuid() == 0:
        for user_dir in users.iterdir():
            with contextlib.suppress(OSError, subprocess.CalledProcessError):
                spark_embedded_files.drop(user_dir.name)
    disks = SessionDisks(data_dir / "session-disks", 1)
    for name in disks.names():
        disks.detach(name)
    overlays = data_dir / "overlays"  # workspaces' overlay disks stay mounted across sessions
    if overlays.is_dir():
        for overlay in overlays.iterdir():
            if os.path.ismount(overlay):
                subprocess.run(["umount", "-l", str(overlay)], check=False, capture_output=True)


def session_processes(data_dir: Path) -> list[Any]:
    """The processes of the sessions (agents, kernels, sandboxes) of the hub of data_dir:
    their command lines name a path in it."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if str(data_dir) in " ".join(p.info["cmdline"] or []):
                found.append(p)
    return found


def _kill_session_processes(data_dir: Path) -> None:
    """Sessions outlive the hub by design; tests clean up the ones they started."""
    import psutil

    for p in session_processes(data_dir):
        with contextlib.suppress(psutil.Error):
            p.kill()


def _hub(tmp: Path, env: dict[str, str] | None = None) -> Iterator[HubProcess]:
    hub = HubProcess(tmp, env).start()
    try:
        yield hub
    finally:
        hub.close()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    """A fresh hub (SQLite) for one test."""
    yield from _hub(tmp_path / "data")


StartHub = Callable[[dict[str, str]], HubProcess]


@pytest.fixture
def hub_with(tmp_path: Path) -> Iterator[StartHub]:
    """A fresh hub (SQLite) for one test, started with these settings (``RSPARKHUB_*``
    variables): ``hub = hub_with({"RSPARKHUB_MAX_UPLOAD_BYTES": "5000"})``; closed after it."""
    started: list[HubProcess] = []

    def start(env: dict[str, str]) -> HubProcess:
        started.append(HubProcess(tmp_path / "data", env).start())
        return started[-1]

    try:
        yield start
    finally:
        for hub in started:
            hub.close()


@pytest.fixture(scope="module")
def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One hub (SQLite) shared by the tests of a module."""
    yield from _hub(tmp_path_factory.mktemp("hub") / "data")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubProcess]:
    """A fresh hub on SQLite, then on a real PostgreSQL server the tests started."""
    env: dict[str, str] = {}
    if request.param == "postgresql":
        env["RSPARKHUB_DATABASE_URL"] = request.getfixturevalue("pg_database")
    yield from _hub(tmp_path / "data", env)


@pytest.fixture
def alice(shared_hub: HubProcess) -> Any:
    return _user(shared_hub, "alice")


def _user(hub: HubProcess, name: str) -> str:
    cache: dict[str, str] = hub.__dict__.setdefault("_tokens", {})
    if name not in cache:
        cache[name] = hub.make_user(name)
    return cache[name]


# The class-data archive that halves a Spark server's start (hub/spark_embedded.py) is made
# once per Java and pyspark install; the test hubs of this machine share one.
SPARK_CLASSES = Path(tempfile.gettempdir()) / "rsparkhub-test-spark-classes"


@contextlib.contextmanager
def embedded_spark_hub(data_dir: Path, env: dict[str, str] | None = None) -> Iterator[HubProcess]:
    """A started hub with embedded Spark: each user's own Spark Connect server starts at
    their first Spark use (or with a session of a workspace that uses Spark). On exit the
    hub is stopped, and none of its users' servers may outlive it."""
    hub = HubProcess(
        data_dir,
        {
            "RSPARKHUB_SPARK": "embedded",
            "RSPARKHUB_SPARK_DRIVER_MEMORY": "1g",
            "RSPARKHUB_SPARK_CLASS_ARCHIVE_DIR": str(SPARK_CLASSES),
            **(env or {}),
        },
    ).start()
    try:
        yield hub
    finally:
        hub.stop()
        left = spark_server_pids(hub)
        hub.close()
        if left:
            pytest.fail(f"Spark Connect servers outlived the hub: {left}")
        if disks := loop_devices_of(data_dir):
            pytest.fail(f"session disks still attached after the hub's clean-up: {disks}")


def loop_devices_of(data_dir: Path) -> list[str]:
    """The loop devices whose backing file lies under data_dir (session disks)."""
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout
    return [line.split(":", 1)[0] for line in out.splitlines() if str(data_dir) in line]


def spark_server_pids(hub: HubProcess, user_id: str | None = None) -> list[int]:
    """The processes of the users' Spark servers (of one user's): the server's argv and its
    JVM's name the user's Spark directory, DATA_DIR/spark/users/<user id>/data."""
    import psutil

    where = hub.data_dir / "spark" / "users"
    mark = str(where / user_id / "data") if user_id else str(where) + "/"
    found = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(mark in arg for arg in p.info["cmdline"] or []):
                found.append(p.pid)
    return found
