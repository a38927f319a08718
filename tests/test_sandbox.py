"""The bubblewrap sandbox of local sessions: code in one user's session cannot read the
hub's database, blobs or another workspace's files, and cannot write outside its own
working directory."""

from __future__ import annotations

from pathlib import Path

from rsparkhub.client import HubClient

from conftest import HubProcess

# bubblewrap is installed by scripts/install.sh; without it these tests fail (not skip).


async def test_session_cannot_escape(shared_hub: HubProcess, alice: str) -> None:
    data = shared_hub.data_dir
    bob = shared_hub.make_user("sandbox-bob")
    async with HubClient(shared_hub.url, bob) as c:
        bob_ws = (await c.ensure_workspace("private"))["id"]
        await c.save_text(bob_ws, "secret.txt", "bob's secret\n", 0)
        async with c.attach(bob_ws) as s:
            r = await s.run("import os; print(os.getcwd())", language="python")
            bob_workdir = r.stdout.strip()
    assert bob_workdir.startswith(str(data))
    assert (Path(bob_workdir) / "secret.txt").read_text() == "bob's secret\n"

    async with HubClient(shared_hub.url, alice) as c:
        wid = (await c.ensure_workspace("attacker"))["id"]
        async with c.attach(wid) as s:
            r = await s.run("import os; print(os.getcwd())", language="python")
            mine = r.stdout.strip()
            targets = {
                "database": str(data / "rsparkhub.db"),
                "blobs": str(data / "blobs"),
                "other workspace": f"{bob_workdir}/secret.txt",
                "hub log": str(data / "hub-test.log"),
            }
            for what, path in targets.items():
                code = f"""
import os
try:
    print(open({path!r}, 'rb').read()[:20])
    print('READ')
except OSError as e:
    print('DENIED', type(e).__name__)
print(os.listdir({str(data)!r}))
"""
                r = await s.run(code, language="python")
                assert "READ" not in r.stdout and "DENIED" in r.stdout, (what, r.stdout)
                listing = r.stdout.strip().splitlines()[-1]
                assert "rsparkhub.db" not in listing and "blobs" not in listing, listing
            # The same from R.
            r = await s.run(
                f"cat(file.exists({targets['database']!r}), file.exists({targets['other workspace']!r}))",
                language="r",
            )
            assert r.stdout == "FALSE FALSE"
            # Writing outside the working directory fails; inside it works.
            repo = str(Path(__file__).resolve().parent.parent)
            for path in (
                "/etc/rsparkhub-escape",
                f"{repo}/escape.txt",
                f"{data}/escape.txt",
                "/root/escape.txt",
            ):
                r = await s.run(f"echo x > {path} && echo WROTE || echo FAILED", language="bash")
                assert not Path(path).exists(), path  # nothing reaches the real file system
                # /tmp is the session's private tmpfs: a checkout under /tmp (as in some CI
                # clones) is shadowed there rather than read-only.
                if not path.startswith("/tmp/") or path.startswith(str(data)):
                    assert "FAILED" in r.stdout and "WROTE" not in r.stdout, (path, r.stdout)
            r = await s.run("echo ok > inside.txt && cat inside.txt", language="bash")
            assert r.stdout.strip().endswith("ok")
            assert (Path(mine) / "inside.txt").exists()
            # Other sessions' processes are invisible (own PID namespace).
            r = await s.run(
                "import os; print(len([p for p in os.listdir('/proc') if p.isdigit()]) < 20)",
                language="python",
            )
            assert r.stdout.strip() == "True"
            # The agent's session token is not visible to user code.
            r = await s.run(
                "import os; print('RSPARKHUB_SESSION_TOKEN' in os.environ)", language="python"
            )
            assert r.stdout.strip() == "False"


def test_doctor_reports_sandbox(shared_hub: HubProcess) -> None:
    out = shared_hub.cli("doctor")
    assert "sandbox=bubblewrap" in out


def test_pasta_gets_ipv6_only_when_the_setting_asks(tmp_path: Path) -> None:
    """``session_ipv6`` off (the default) starts pasta with -4; on, without it."""
    from rsparkhub.config import Settings
    from rsparkhub.hub.sandbox import Identity, SandboxSpec, sandboxes_for

    spec = SandboxSpec(
        name="t", identity=Identity(200123, 200123), argv=["true"], env={}, chdir="/"
    )
    fds = {"seccomp": 10, "passwd": 11, "group": 12}
    for ipv6 in (False, True):
        sbx = sandboxes_for(Settings(data_dir=tmp_path, session_ipv6=ipv6), enabled=True)
        assert sbx.mode.network == "pasta", "pasta (Debian passt) is part of the install"
        cmd = sbx.command(spec, fds)
        pasta = cmd[: cmd.index("--")]
        assert ("-4" in pasta) is (not ipv6), pasta


def test_python_under_a_masked_path_is_bound_back(tmp_path: Path) -> None:
    """A checkout or venv under /tmp (or the data dir) must stay visible in the sandbox:
    its read-only bind comes after the mask that hides the data dir."""
    import sys

    from rsparkhub.hub.sandbox import Identity, Sandboxes, SandboxSpec

    sbx = Sandboxes()
    prefix = Path(sys.prefix).resolve()
    spec = SandboxSpec(
        name="t",
        identity=Identity(200123, 200123),
        argv=["true"],
        env={},
        chdir="/",
        ro_binds=sbx.runtime_binds(),
        masked=[str(prefix.parent)],  # the venv lies in the "data dir"
    )
    cmd = sbx.command(spec, {"seccomp": 10, "passwd": 11, "group": 12})
    mask = cmd.index(str(prefix.parent), cmd.index("--tmpfs", cmd.index("/dev/shm")))
    binds = [i for i, a in enumerate(cmd) if a == "--ro-bind" and cmd[i + 2] == str(prefix)]
    assert binds and binds[0] > mask, cmd
    assert cmd[-2:] == ["--", "true"] and "--remount-ro" in cmd


async def test_a_sandbox_and_what_it_starts_are_in_its_cgroup() -> None:
    """The command prefix (``cgroups.entering``) moves the process into every controller's
    group before the sandbox starts, so all it starts (pasta, bwrap, the command and its
    children) is counted, limited and killed together."""
    import asyncio

    from rsparkhub.hub.sandbox import Identity, Sandboxes, SandboxSpec

    sbx = Sandboxes(scope="cgtest")
    assert sbx.cgroups.version != "none", "this host's cgroups are writable as root"
    spec = SandboxSpec(
        name="entry",
        identity=Identity(200123, 200123),
        argv=["/bin/sh", "-c", "sleep 60 & sleep 60"],
        env={"PATH": "/usr/bin:/bin"},
        chdir="/",
        ro_binds=sbx.runtime_binds(),
    )
    proc = await sbx.spawn(spec)
    try:
        for _ in range(100):  # pasta (setpriv became it), bwrap ×2, sh, sleep ×2
            pids = sbx.pids("entry")
            if len(pids) >= 6:
                break
            await asyncio.sleep(0.05)
        assert proc.pid in pids and len(pids) >= 6, pids
        want = "/rsparkhub/cgtest.entry"
        for pid in pids:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
            groups = {ln.split(":", 2)[1]: ln.split(":", 2)[2] for ln in lines}
            if sbx.cgroups.version == "v1":
                for controller in ("memory", "pids"):
                    key = next(k for k in groups if controller in k.split(","))
                    assert groups[key] == want, (pid, lines)
            else:
                assert groups[""] == want, (pid, lines)
    finally:
        sbx.kill("entry")
        await proc.wait()
    assert sbx.pids("entry") == []
