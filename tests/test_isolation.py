"""Escape attempts from real sessions, each asserted to fail (docs/security.md).

Two users, alice and bob, each with a workspace and a running session, on a root hub (as
CI runs it) and on an unprivileged hub (a laptop user's). Everything below runs inside
alice's session, in bash, Python and R, the way an attacker would. A check that cannot run
fails; nothing here skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from rsparkhub.client import HubClient

from conftest import HubProcess

UNPRIVILEGED_UID = 190000  # the "laptop user" running the unprivileged hub


@dataclass
class World:
    kind: str  # "root" | "unprivileged"
    hub: HubProcess
    alice: str
    bob: str
    bob_workdir: str
    service_port: int  # a loopback service on the host no session may reach


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


# Python run in a session: every way its code could find the session token (its agent's
# environ, memory, fds, ptrace; any process's environ or cmdline; any open pipe or file).
TOKEN_HUNT = r"""
import ctypes, glob, os, re
# A session token: "rsa_" and 43 URL-safe characters (built here so this code has none).
TOKEN = re.compile(b"rs" + b"a_[A-Za-z0-9_-]{20,}")
hits = []
for path in glob.glob('/proc/[0-9]*/environ') + glob.glob('/proc/[0-9]*/cmdline'):
    try:
        if TOKEN.search(open(path, 'rb').read()):
            hits.append(path)
    except OSError:
        pass
agents = []
for d in glob.glob('/proc/[0-9]*'):
    try:
        cmd = open(d + '/cmdline', 'rb').read().split(b'\0')
    except OSError:
        continue
    if b'rsparkhub.agent' in cmd and b'python' in cmd[0].rsplit(b'/', 1)[-1]:
        agents.append(int(d.rsplit('/', 1)[1]))
print('AGENTS', len(agents))
for pid in agents:
    for what in ('environ', 'mem', 'fd/0', 'fd/3'):
        try:
            open(f'/proc/{pid}/{what}', 'rb').read(64); hits.append(f'{pid}/{what}')
        except OSError:
            pass
    try:
        os.listdir(f'/proc/{pid}/fd'); hits.append(f'{pid}/fd-list')
    except OSError:
        pass
    libc = ctypes.CDLL(None, use_errno=True)
    PTRACE_ATTACH = 16
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) == 0:
        hits.append(f'ptrace {pid}')
# Every pipe or file any visible process holds open (the token pipe was read and closed).
for fd in glob.glob('/proc/[0-9]*/fd/*'):
    try:
        h = os.open(fd, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        continue
    try:
        if TOKEN.search(os.read(h, 1 << 16)):
            hits.append(fd)
    except OSError:
        pass
    finally:
        os.close(h)
print('HITS', hits)
"""


@pytest.fixture(scope="module")
def loopback_service() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()


DISK_MB = 160  # each session's disk (session_disk_mb), small so that filling it is quick


@pytest.fixture(scope="module", params=["root", "unprivileged"])
def world(request: pytest.FixtureRequest, loopback_service: int) -> Iterator[World]:
    kind = request.param
    env = {
        "RSPARKHUB_SESSION_MEMORY_MB": "1536",
        "RSPARKHUB_SESSION_MAX_PROCESSES": "256",
        "RSPARKHUB_SESSION_DISK_MB": str(DISK_MB),
        "RSPARKHUB_OVERLAY_DISK_MB": str(DISK_MB),
        # a root hub hands users' later sessions out of its warm pool: the attacks below
        # run from those too (test_a_warm_session_is_the_users_own_and_holds_no_token)
        "RSPARKHUB_SESSION_POOL_SIZE": "1",
    }
    if kind == "root":
        assert os.geteuid() == 0, "CI runs the suite as root: the root-hub checks need it"
        base = Path(tempfile.mkdtemp(prefix="rsh-iso-"))
        hub = HubProcess(base / "data", env)
    else:
        # A data directory this uid can reach (pytest's own tmp dir is root's, 0700).
        base = Path(tempfile.mkdtemp(prefix="rsh-iso-laptop-"))
        os.chmod(base, 0o755)
        os.chown(base, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        hub = HubProcess(base / "data", env, run_as=UNPRIVILEGED_UID)
    hub.start()
    try:
        alice, bob = hub.make_user("alice"), hub.make_user("bob")

        async def bob_setup() -> str:
            async with HubClient(hub.url, bob) as c:
                wid = (await c.ensure_workspace("private"))["id"]
                await c.save_text(wid, "secret.txt", "bob's secret\n", 0)
                async with c.attach(wid) as s:
                    r = await s.run("cat(getwd())", language="r")
                    return r.stdout.strip()

        bob_workdir = asyncio.run(bob_setup())
        assert bob_workdir.startswith(str(hub.data_dir)), bob_workdir
        yield World(kind, hub, alice, bob, bob_workdir, loopback_service)
    finally:
        hub.close()


@pytest.fixture
async def alice_session(world: World) -> AsyncIterator[object]:
    async with HubClient(world.hub.url, world.alice) as c:
        wid = (await c.ensure_workspace("attack"))["id"]
        async with c.attach(wid) as s:
            yield s


async def run(session: object, code: str, language: str) -> str:
    r = await session.run(code, language=language)  # type: ignore[attr-defined]
    return str(r.stdout) + str(r.stderr)


def hub_pid(world: World) -> int:
    assert world.hub.proc is not None
    return world.hub.proc.pid


# ---------------------------------------------------------------------------- identity


async def test_session_runs_as_its_users_own_uid_without_privileges(
    world: World, alice_session: object
) -> None:
    out = await run(
        alice_session,
        "id -u; id -g; grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status",
        "bash",
    )
    lines = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    uid = int(out.split()[0])
    assert uid != 0
    if world.kind == "unprivileged":
        assert uid == UNPRIVILEGED_UID
    assert int(lines["CapEff"].strip(), 16) == 0 and int(lines["CapPrm"].strip(), 16) == 0
    assert int(lines["CapBnd"].strip(), 16) == 0
    assert lines["NoNewPrivs"].strip() == "1"
    assert lines["Seccomp"].strip() == "2"  # a filter is loaded
    # bob's sessions run under another uid on a root hub.
    async with HubClient(world.hub.url, world.bob) as c:
        wid = (await c.ensure_workspace("private"))["id"]
        async with c.attach(wid) as s:
            bob_uid = int((await run(s, "id -u", "bash")).split()[0])
    if world.kind == "root":
        assert bob_uid != uid and bob_uid != 0
    # The uid is stable: the same in Python and R.
    assert (await run(alice_session, "import os; print(os.getuid())", "python")).strip() == str(uid)


# ---------------------------------------------------------------------------- files


async def test_files_outside_the_users_own_work_are_out_of_reach(
    world: World, alice_session: object
) -> None:
    data = world.hub.data_dir
    secret = f"{world.bob_workdir}/secret.txt"
    targets = [
        "/etc/shadow",
        str(data / "rsparkhub.db"),
        str(data / "hub-secret"),
        secret,
        "/root/.bash_history",
    ]
    code = "\n".join(
        f"cat {t} >/dev/null 2>&1 && echo 'READ {t}' || echo 'DENIED {t}'" for t in targets
    )
    out = await run(alice_session, code, "bash")
    assert "READ" not in out and out.count("DENIED") == len(targets), out
    py = f"""
import os
found = []
for p in {targets!r}:
    try:
        open(p, 'rb').read(1); found.append(p)
    except OSError:
        pass
print('FOUND', found)
print('DATA', os.listdir({str(data)!r}) if os.path.isdir({str(data)!r}) else [])
print('ROOT', sorted(os.listdir('/root')) if os.path.isdir('/root') else [])
"""
    out = await run(alice_session, py, "python")
    assert "FOUND []" in out, out
    listing = next(x for x in out.splitlines() if x.startswith("DATA"))
    assert "rsparkhub.db" not in listing and "blobs" not in listing, listing
    root = next(x for x in out.splitlines() if x.startswith("ROOT"))
    assert root in ("ROOT []", "ROOT ['.pyenv']"), root  # at most the Python installation
    out = await run(
        alice_session,
        f"cat(file.exists({secret!r}), tryCatch(length(readLines('/etc/shadow')), "
        "error = function(e) 'DENIED'), tryCatch(length(readLines('/etc/shadow')), "
        "warning = function(w) 'DENIED'))",
        "r",
    )
    assert out.startswith("FALSE DENIED"), out
    # Writing anywhere but the session's own directory, /tmp and /dev/shm fails, and nothing
    # reaches the real file system.
    repo = str(Path(__file__).resolve().parent.parent)
    for path in ("/etc/rsh-escape", f"{repo}/rsh-escape", f"{data}/rsh-escape", "/usr/rsh-x"):
        out = await run(alice_session, f"echo x > {path} && echo WROTE || echo FAILED", "bash")
        # (A checkout under /tmp shows inside the session's private /tmp, where writing may
        # succeed; it must still never reach the host's file.)
        if not (path.startswith(repo) and repo.startswith("/tmp/")):
            assert "FAILED" in out and "WROTE" not in out, (path, out)
        assert not Path(path).exists(), path


async def test_mounts_namespaces_and_nsenter_are_refused(
    world: World, alice_session: object
) -> None:
    code = """
mkdir -p /tmp/h
mount --bind / /tmp/h 2>/dev/null && echo MOUNTED || echo no-mount
umount -l /proc 2>/dev/null && echo UMOUNTED || echo no-umount
unshare -Ur true 2>/dev/null && echo UNSHARED || echo no-unshare
unshare -m true 2>/dev/null && echo UNSHARED-M || echo no-unshare-m
nsenter -t 1 -m true 2>/dev/null && echo ENTERED || echo no-nsenter
python3 -c "import ctypes; l=ctypes.CDLL(None, use_errno=True); print('MNT' if l.mount(b'none', b'/tmp/h', b'tmpfs', 0, None)==0 else 'no-syscall-mount')"
ls /proc/1/root/ >/dev/null 2>&1 && ls /proc/1/root/ | grep -q rsparkhub.db && echo HOSTROOT || echo no-hostroot
"""
    out = await run(alice_session, code, "bash")
    for bad in ("MOUNTED", "UMOUNTED", "UNSHARED", "ENTERED", "\nMNT", "HOSTROOT"):
        assert bad not in out, (bad, out)
    for good in ("no-mount", "no-umount", "no-unshare", "no-nsenter", "no-syscall-mount"):
        assert good in out, (good, out)


# ---------------------------------------------------------------------------- processes


async def test_other_processes_are_invisible_and_cannot_be_signalled(
    world: World, alice_session: object
) -> None:
    pid = hub_pid(world)
    out = await run(
        alice_session,
        f"""
import os, signal
pids = [int(p) for p in os.listdir('/proc') if p.isdigit()]
print('COUNT', len(pids))
for target in ({pid}, 1):
    try:
        os.kill(target, signal.SIGKILL if target != 1 else 0); print('SIGNALLED', target)
    except OSError as e:
        print('REFUSED', target, type(e).__name__)
""",
        "python",
    )
    count = int(out.split("COUNT")[1].split()[0])
    assert count < 30, out  # the session's own processes only (own PID namespace)
    assert f"SIGNALLED {pid}" not in out
    assert world.hub.proc is not None and world.hub.proc.poll() is None
    async with httpx.AsyncClient() as h:
        assert (await h.get(f"{world.hub.url}/api/health", timeout=10)).status_code == 200


async def test_session_code_cannot_read_its_own_token(world: World, alice_session: object) -> None:
    """The token reaches the agent through a pipe and the agent is non-dumpable: nothing in
    the session (same uid) can read it from /proc or by ptrace."""
    out = await run(alice_session, TOKEN_HUNT, "python")
    assert "AGENTS 1" in out, out
    assert "HITS []" in out, out


# ---------------------------------------------------------------------------- network


def _host_addresses() -> list[str]:
    addrs = {"127.0.0.1"}
    for _fam, _t, _p, _c, sa in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
        addrs.add(str(sa[0]))
    for _name, snics in psutil.net_if_addrs().items():
        for a in snics:
            if a.family == socket.AF_INET:
                addrs.add(a.address)
    return sorted(addrs)


async def test_no_host_port_is_reachable(world: World, alice_session: object) -> None:
    # Agents reach the hub through its unix socket: not even the hub's port is forwarded.
    # 10.0.2.2: user-mode networks' alias for the machine's own loopback (this CI VM has it).
    hosts = [*_host_addresses(), "10.0.2.2"]
    targets = [(a, p) for a in hosts for p in (world.service_port, world.hub.port)]
    # all at once: an address that drops packets costs its whole timeout
    code = f"""
import socket
from concurrent.futures import ThreadPoolExecutor
def probe(target):
    try:
        socket.create_connection(target, timeout=5).close()
        return 'REACHED %s %s' % target
    except OSError:
        return 'BLOCKED %s %s' % target
with ThreadPoolExecutor(len({targets!r})) as pool:
    print('\\n'.join(pool.map(probe, {targets!r})))
"""
    out = await run(alice_session, code, "python")
    assert "REACHED" not in out and "BLOCKED" in out, out
    # The same service is reachable from the host itself (the check can fail).
    socket.create_connection(("127.0.0.1", world.service_port), timeout=3).close()
    out = await run(
        alice_session,
        f"exec 3<>/dev/tcp/127.0.0.1/{world.service_port} && echo REACHED || echo BLOCKED",
        "bash",
    )
    assert "BLOCKED" in out and "REACHED" not in out, out


# ---------------------------------------------------------------------------- resources


async def test_fork_bomb_and_memory_hog_stay_contained(world: World) -> None:
    async with HubClient(world.hub.url, world.alice) as c:
        wid = (await c.ensure_workspace("bomb"))["id"]
        async with c.attach(wid) as s:
            # Processes: bounded (the pids limit on a root hub, RLIMIT_NPROC otherwise).
            out = await run(
                s,
                """
import os, time
pids = []
for i in range(600):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    pids.append(pid)
print('started', len(pids))
for p in pids:
    os.kill(p, 9)
    os.waitpid(p, 0)
""",
                "python",
            )
            started = int(out.split("started")[1].split()[0])
            assert 0 < started < 600, out
            # Memory: a hog fails or is killed, within the session.
            r = await s.run(  # type: ignore[attr-defined]
                "x = b'x' * (3 * 1024**3)\nprint('ALLOCATED')", language="python"
            )
            assert "ALLOCATED" not in r.stdout
            text = repr(r.events) + repr(r.done)
            if world.kind == "root":  # the cgroup's OOM kill, named in the console
                assert "ran out of memory" in text, (text, r.done)
            else:  # RLIMIT_AS: Python's own MemoryError
                assert "MemoryError" in text, (text, r.done)
            # /dev/shm is sized by the profile.
            out = await run(
                s,
                "dd if=/dev/zero of=/dev/shm/big bs=1M count=2048 2>&1 | tail -1; "
                "du -sm /dev/shm | cut -f1",
                "bash",
            )
            assert int(out.split()[-1]) <= 600, out
            # Meanwhile the hub and bob keep answering.
            async with httpx.AsyncClient() as h:
                assert (await h.get(f"{world.hub.url}/api/health", timeout=30)).status_code == 200
            async with HubClient(world.hub.url, world.bob) as b:
                bwid = (await b.ensure_workspace("private"))["id"]
                async with b.attach(bwid) as bs:
                    assert (await run(bs, "cat(1 + 1)", "r")).strip() == "2"
            await c.stop_session(wid)


async def test_a_session_cannot_fill_the_hubs_disk(world: World) -> None:
    """A root hub gives each session a disk of its own (session_disk_mb): writing past it
    fails in the session with 'No space left on device' while another user's session keeps
    writing; stopping the session unmounts and deletes the disk. The workspace's package
    overlay is capped the same way (overlay_disk_mb) and its disk stays for the next session. An unprivileged hub cannot
    mount: doctor says the cap is missing (test_doctor_reports_the_isolation_in_effect)."""
    if world.kind != "root":
        assert "session disk: no cap" in world.hub.cli("doctor")
        return
    disks = world.hub.data_dir / "session-disks"
    async with HubClient(world.hub.url, world.alice) as c:
        wid = (await c.ensure_workspace("filler"))["id"]
        async with c.attach(wid) as s:
            image = disks / f"session-{s.session_id}.img"
            assert image.is_file()
            out = await run(
                s,
                "dd if=/dev/zero of=$HOME/big bs=1M count=400 2>&1 | grep -o 'No space left' "
                "| head -1; df -m . | tail -1 | awk '{print $2}'; du -sm $HOME/big | cut -f1",
                "bash",
            )
            lines = out.split()
            assert out.startswith("No space left"), out
            assert int(lines[-2]) <= DISK_MB and int(lines[-1]) <= DISK_MB, out
            assert image.stat().st_blocks * 512 <= (DISK_MB + 8) * 1024 * 1024
            # bob's session is on a disk of its own and keeps writing
            async with HubClient(world.hub.url, world.bob) as b:
                bwid = (await b.ensure_workspace("private"))["id"]
                async with b.attach(bwid) as bs:
                    out = await run(
                        bs, "dd if=/dev/zero of=$HOME/ok bs=1M count=20 2>&1 | tail -1", "bash"
                    )
                    assert "copied" in out, out
            # the workspace's package overlay (pip install, install.packages) has a disk of
            # its own too, which outlives the session
            out = await run(
                s,
                "dd if=/dev/zero of=$PIP_TARGET/big bs=1M count=400 2>&1 | grep -o 'No space "
                "left' | head -1; df -m $PIP_TARGET | tail -1 | awk '{print $2}'",
                "bash",
            )
            assert out.startswith("No space left"), out
            assert int(out.split()[-1]) <= DISK_MB, out
            workdir = (await run(s, "cat(getwd())", "r")).strip()
            overlay = (await run(s, "echo $PIP_TARGET", "bash")).strip()
            await c.stop_session(wid)
    assert not image.exists()
    assert not os.path.ismount(Path(workdir).parent)
    assert os.path.ismount(Path(overlay).parent), "the overlay's disk went with the session"


async def test_a_killed_agent_leaves_no_kernel_behind(world: World) -> None:
    """SIGKILL the agent (as the OOM killer or an operator would): the session's whole
    sandbox goes with it, its R kernel included."""
    async with HubClient(world.hub.url, world.alice) as c:
        wid = (await c.ensure_workspace("orphans"))["id"]
        async with c.attach(wid) as s:
            assert (await run(s, "cat(1)", "r")).strip() == "1"
            with world.hub.client(world.alice) as h:
                sid = h.get(f"/api/workspaces/{wid}/session").json()["id"]
            mine = [
                p
                for p in psutil.process_iter(["cmdline"])
                if f"/sessions/{sid}/" in " ".join(p.info["cmdline"] or [])
            ]

            def is_agent(p: psutil.Process) -> bool:
                cmd = p.cmdline()
                return "rsparkhub.agent" in cmd and Path(cmd[0]).name.startswith("python")

            agents = [p for p in mine if is_agent(p)]
            kernels = [
                p
                for a in agents
                for p in a.children(recursive=True)
                if p.cmdline() and p.cmdline()[0].rsplit("/", 1)[-1] == "R"
            ]
            assert len(agents) == 1 and kernels, [p.cmdline() for p in mine]
            agents[0].kill()
            _gone, alive = psutil.wait_procs(kernels, timeout=30)
            assert not alive, f"kernels outlived their agent: {alive}"


def _pool_agents(data_dir: Path) -> dict[str, psutil.Process]:
    """Agents started for the warm pool (``--pool``) of the hub of ``data_dir``, by id."""
    found = {}
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "rsparkhub.agent" in cmd and "--pool" in cmd and str(data_dir) in " ".join(cmd):
            found[cmd[cmd.index("--session-id") + 1]] = p
    return found


async def _entry_ready(data_dir: Path, uid: int, not_in: set[str]) -> None:
    """Until a pooled agent of ``uid`` (not one of the sessions ``not_in``) has its Python
    kernel running (at most 60 s)."""
    for _ in range(600):
        for sid, agent in _pool_agents(data_dir).items():
            with contextlib.suppress(psutil.Error):
                if sid not in not_in and agent.uids().real == uid:
                    kids = [" ".join(k.cmdline()) for k in agent.children(recursive=True)]
                    if any("rsparkhub.agent.launch" in k or "ipykernel" in k for k in kids):
                        await asyncio.sleep(1.0)  # its start-up code has run
                        return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no pooled session of uid {uid}")


async def test_a_warm_session_is_the_users_own_and_holds_no_token(world: World) -> None:
    """Root hub: alice's next session comes out of her warm pool (started ahead under her
    uid); from it, her uid, no capabilities and no token anywhere. Unprivileged hub: no
    pool, every session starts cold."""
    uids, ids, from_pool = [], [], []
    async with HubClient(world.hub.url, world.alice) as c:
        for name in ("warm-1", "warm-2"):  # the first start fills the pool for the second
            wid = (await c.ensure_workspace(name))["id"]
            async with c.attach(wid) as s:
                status = await run(s, "print(open('/proc/self/status').read())", "python")
                ids.append((await c.request("GET", f"/api/workspaces/{wid}/session"))["id"])
                from_pool.append(ids[-1] in _pool_agents(world.hub.data_dir))
                uids.append(next(x for x in status.splitlines() if x.startswith("Uid:")).split()[1])
                assert "CapEff:\t0000000000000000" in status, status
                hunt = await run(s, TOKEN_HUNT, "python")
                assert "AGENTS 1" in hunt and "HITS []" in hunt, hunt
                if name == "warm-1" and world.kind == "root":  # wait for alice's entry
                    await _entry_ready(world.hub.data_dir, int(uids[0]), set(ids))
            await c.stop_session(wid)
    assert len(set(uids)) == 1 and uids[0] != "0", uids
    # the second one at least (the first may have been too, from earlier tests' sessions)
    assert from_pool[1] == (world.kind == "root"), (world.kind, from_pool)


# ---------------------------------------------------------------------------- reporting


def test_doctor_reports_the_isolation_in_effect(world: World) -> None:
    out = world.hub.cli("doctor")
    line = next(x for x in out.splitlines() if x.startswith("isolation:"))
    assert line.startswith(f"isolation: {world.kind} network=pasta"), line
    assert "seccomp=on" in line
    disk = next(x for x in out.splitlines() if x.startswith("session disk:"))
    if world.kind == "root":
        assert "cgroups=v1" in line or "cgroups=v2" in line, line
        assert disk.startswith("session disk: ") and "MB of its own" in disk, disk
    else:
        assert "no cap (the hub does not run as root" in disk, disk
    pool = next(x for x in out.splitlines() if x.startswith("warm pool:"))
    if world.kind == "root":
        assert pool == "warm pool: 1 per user", pool
    else:
        assert pool.startswith("warm pool: off (an unprivileged hub cannot bind"), pool


def test_a_second_user_on_an_unprivileged_hub_is_warned_about(world: World) -> None:
    import subprocess

    from conftest import PASSWORD, RSPARKHUB

    out = subprocess.run(
        [
            *world.hub.prefix,
            RSPARKHUB,
            "user",
            "add",
            "carol",
            "--data-dir",
            str(world.hub.data_dir),
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=world.hub.env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    if world.kind == "unprivileged":
        assert "warning: This hub runs as uid" in out.stderr, out.stderr
    else:
        assert "warning" not in out.stderr, out.stderr


def test_hub_files_are_private(world: World) -> None:
    """Nothing in the data directory is readable by another account (here: nobody)."""
    import stat
    import subprocess

    data = world.hub.data_dir
    assert stat.S_IMODE(data.stat().st_mode) in (0o700, 0o711)
    hub_uid = data.stat().st_uid
    exposed = []
    # Session directories hold the user's own files (their modes are the user's business)
    # behind a 0700 directory of their own.
    for d in (data / "sessions").iterdir():
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for dirpath, dirs, files in os.walk(data):
        if Path(dirpath) == data:
            dirs[:] = [x for x in dirs if x != "sessions"]
        for name in files:
            p = Path(dirpath) / name
            st = p.lstat()
            if st.st_uid == hub_uid and stat.S_ISREG(st.st_mode) and st.st_mode & 0o044:
                exposed.append(f"{p} {oct(st.st_mode)}")
    assert not exposed, exposed
    events = next(data.glob("logs/*/events.jsonl"))
    for target in (data / "rsparkhub.db", events, data / "hub-secret"):
        if not target.exists():
            continue
        r = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", str(target)],
            capture_output=True,
            timeout=10,
        )
        assert r.returncode != 0 and not r.stdout, target


def _has_default_route(text: str) -> bool:
    return any(line.split()[1] == "00000000" for line in text.splitlines()[1:] if line.split())


def _ipv6_default_routes(text: str) -> list[str]:
    """Default routes (::/0) of /proc/net/ipv6_route through a device other than lo (lo
    holds the kernel's own unreachable ::/0). Link-local and multicast routes the kernel
    adds to any interface that is up lead nowhere beyond the namespace."""
    return [
        line
        for line in text.splitlines()
        if len(f := line.split()) == 10 and f[0] == "0" * 32 and f[1] == "00" and f[9] != "lo"
    ]


async def test_outbound_network_follows_the_policy(world: World, tmp_path: Path) -> None:
    """internet (the default): a route out, over IPv4 only (``session_ipv6`` is off: pasta
    -4). hub-only: only lo — nothing but the forwards."""
    async with HubClient(world.hub.url, world.alice) as c:
        wid = (await c.ensure_workspace("attack"))["id"]
        async with c.attach(wid) as s:
            routes = await run(s, "cat /proc/net/route", "bash")
            routes6 = await run(s, "cat /proc/net/ipv6_route; echo END", "bash")
    assert _has_default_route(routes), routes
    assert routes6.strip().endswith("END") and not _ipv6_default_routes(routes6), routes6
    if world.kind != "root":
        return
    closed = HubProcess(tmp_path / "data", {"RSPARKHUB_SESSION_NETWORK": "hub-only"}).start()
    try:
        token = closed.make_user("dora")
        async with HubClient(closed.url, token) as c:
            wid = (await c.ensure_workspace("offline"))["id"]
            async with c.attach(wid) as s:
                routes = await run(s, "cat /proc/net/route", "bash")
                out = await run(
                    s,
                    """
import socket
for host in ('192.0.2.1', '10.0.2.2', '1.1.1.1'):
    try:
        socket.create_connection((host, 80), timeout=3).close(); print('REACHED', host)
    except OSError as e:
        print('BLOCKED', host, e.errno)
""",
                    "python",
                )
        assert not _has_default_route(routes), routes
        assert "REACHED" not in out and out.count("BLOCKED") == 3, out
    finally:
        closed.close()


async def test_a_stolen_token_cannot_take_over_a_connected_agent(world: World) -> None:
    """While a session's agent is connected, a second agent connection with that session's
    token is refused (4409) and the session carries on. The stolen token is simulated by
    rewriting the session's token hash in the hub database: the real token is in a pipe
    only the agent read, which is the point of test_session_code_cannot_read_its_own_token."""
    import secrets
    import sqlite3

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from rsparkhub import protocol as P
    from rsparkhub.hub.auth import hash_token

    async with HubClient(world.hub.url, world.alice) as c:
        wid = (await c.ensure_workspace("stolen"))["id"]
        async with c.attach(wid) as s:
            assert (await run(s, "print(1 + 1)", "python")).strip() == "2"
            with world.hub.client(world.alice) as h:
                sid = h.get(f"/api/workspaces/{wid}/session").json()["id"]
            token = "rsa_" + secrets.token_urlsafe(32)
            db = sqlite3.connect(world.hub.data_dir / "rsparkhub.db", timeout=30)
            with db:
                db.execute(
                    "UPDATE sessions SET token_hash = ? WHERE id = ?", (hash_token(token), sid)
                )
            db.close()
            url = f"ws://127.0.0.1:{world.hub.port}/agent/ws"
            hello = P.AgentHello(session_id=sid, languages=[], first_unacked_seq=1, resumed=True)
            async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                await ws.send(P.dump(hello))
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 20)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
            assert (await run(s, "print(2 + 2)", "python")).strip() == "4"
