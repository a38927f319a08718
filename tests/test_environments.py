"""Workspace environments with real sessions, real uv downloads from PyPI and real R
(docs/environments.md): a declared requirements.txt is built once and shared, two
declarations get two environments, installs in a session go to the workspace's overlay
and survive a restart, nobody's session writes into a shared environment, and R's
DESCRIPTION resolves against the base library and workspace tarballs, with a clear error
for what this machine cannot install."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from rsparkhub.client import HubClient

from conftest import HubProcess

UNPRIVILEGED_UID = 190000


def _start(kind: str) -> HubProcess:
    env = {"RSPARKHUB_SESSION_MEMORY_MB": "1536"}
    if kind == "root":
        hub = HubProcess(Path(tempfile.mkdtemp(prefix="rsh-env-")) / "data", env)
    else:
        base = Path(tempfile.mkdtemp(prefix="rsh-env-laptop-"))
        os.chmod(base, 0o755)
        os.chown(base, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        hub = HubProcess(base / "data", env, run_as=UNPRIVILEGED_UID)
    return hub.start()


@pytest.fixture(scope="module")
def hub() -> Iterator[HubProcess]:
    h = _start("root")
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def alice(hub: HubProcess) -> str:
    return hub.make_user("alice")


@contextlib.asynccontextmanager
async def workspace(
    hub: HubProcess, token: str, name: str, files: dict[str, str]
) -> AsyncIterator[tuple[HubClient, str]]:
    async with HubClient(hub.url, token) as c:
        wid = (await c.ensure_workspace(name))["id"]
        for path, text in files.items():
            await c.save_text(wid, path, text, 0)
        try:
            yield c, wid
        finally:
            with contextlib.suppress(Exception):
                await c.stop_session(wid)


async def notices(att: object, seconds: float = 1.5) -> list[str]:
    """The session's start messages a client was told: while it waited for the session
    (before the welcome) and when it attached."""
    out = [m["message"] for m in att.side if m.get("type") == "session_state" and m.get("message")]  # type: ignore[attr-defined]
    with contextlib.suppress(TimeoutError):
        async for msg in att.messages(timeout=seconds):  # type: ignore[attr-defined]
            if msg.get("type") == "session_state" and msg.get("message"):
                out.append(msg["message"])
    return out


def env_dirs(hub: HubProcess, kind: str) -> list[Path]:
    root = hub.data_dir / "environments" / kind
    return sorted(root.iterdir()) if root.is_dir() else []


def source_of(listed: dict[str, list[dict[str, str]]], lang: str, name: str) -> tuple[str, str]:
    """(version, source) of one package in the Packages pane's list."""
    [p] = [p for p in listed[lang] if p["name"].lower() == name]
    return p["version"], p["source"]


async def py(att: object, code: str) -> str:
    r = await att.run(code, language="python")  # type: ignore[attr-defined]
    return str(r.stdout) + str(r.stderr)


async def test_requirements_are_built_once_and_shared(hub: HubProcess, alice: str) -> None:
    async with workspace(
        hub, alice, "six-old", {"requirements.txt": "six==1.16.0  # pinned\n"}
    ) as (c, wid):
        async with c.attach(wid) as s:
            out = await py(s, "import six, sys; print(six.__version__, six.__file__)")
        assert out.startswith("1.16.0 "), out
        [built] = env_dirs(hub, "python")
        assert f"{built}/site/six.py" in out
        ino = built.stat().st_ino
        assert built.stat().st_uid == 0 and not built.stat().st_mode & 0o222
    log_before = hub.log_path.read_text().count("built environment python/")
    assert log_before == 1
    # the same declaration (other order, comments) in another workspace: no second build
    async with workspace(
        hub, alice, "six-again", {"requirements.txt": "# same\nsix == 1.16.0\n"}
    ) as (c, wid):
        async with c.attach(wid) as s:
            out = await py(s, "import six; print(six.__version__, six.__file__)")
            told = await notices(s, 0.1)
    assert out.startswith("1.16.0 "), out
    assert env_dirs(hub, "python") == [built] and built.stat().st_ino == ino
    assert f"environment (python): requirements.txt → {built.name[:12]} (from the cache)" in told
    assert hub.log_path.read_text().count("built environment python/") == 1
    # another version of the same package: its own environment, each sees its own
    # (attrs: the base has 26.x; the pinned version shadows it)
    files = {"requirements.txt": "six==1.17.0\nattrs==23.1.0\n"}
    async with workspace(hub, alice, "six-new", files) as (c, wid):
        async with c.attach(wid) as s:
            out = await py(
                s,
                "import six, attrs, importlib.metadata as m; print(six.__version__, m.version('attrs'))",
            )
        listed = await c.request("GET", f"/api/workspaces/{wid}/packages")
    assert out.split() == ["1.17.0", "23.1.0"], out  # (attrs: m.version finds the first)
    assert source_of(listed, "python", "six") == ("1.17.0", "environment")
    assert len(env_dirs(hub, "python")) == 2
    async with workspace(hub, alice, "six-old", {}) as (c, wid):
        async with c.attach(wid) as s:
            assert (await py(s, "import six; print(six.__version__)")).strip() == "1.16.0"


async def test_sessions_starting_together_share_one_build(hub: HubProcess, alice: str) -> None:
    files = {"requirements.txt": "tomli==2.0.1\nsix==1.16.0\n"}
    builds = hub.log_path.read_text().count("built environment python/")
    async with (
        workspace(hub, alice, "together-1", files) as (c1, w1),
        workspace(hub, alice, "together-2", files) as (c2, w2),
    ):
        await asyncio.gather(c1.start_session(w1), c2.start_session(w2))
        told: list[list[str]] = []
        for c, w in ((c1, w1), (c2, w2)):
            # attached once the session runs: the build's progress is told all the same
            async with c.attach(w) as s:
                assert (
                    await py(s, "import tomli, six; print(six.__version__)")
                ).strip() == "1.16.0"
                told.append(await notices(s, 0.1))
    assert hub.log_path.read_text().count("built environment python/") == builds + 1
    for lines in told:
        assert any(m.startswith("environment (python): building requirements.txt") for m in lines)
    ends = sorted(m.rsplit("(", 1)[1] for lines in told for m in lines if " → " in m)
    assert ends == ["built)", "from the cache)"], told  # one built it, the other waited


async def test_a_failed_build_says_why(hub: HubProcess, alice: str) -> None:
    files = {"requirements.txt": "six==0.0.0.404\n"}
    async with workspace(hub, alice, "broken", files) as (c, wid):
        async with c.attach(wid) as s:
            told = await notices(s)
            out = await py(s, "import importlib.util; print(importlib.util.find_spec('six'))")
    failed = [m for m in told if m.startswith("No Python environment in this session")]
    assert failed and "six==0.0.0.404" in failed[0] and "requirements.txt" in failed[0], told
    assert out.strip() == "None"  # the session started anyway, with the base packages


async def test_a_failed_build_is_not_retried_at_every_start_until_a_rebuild(
    hub: HubProcess, alice: str
) -> None:
    files = {"requirements.txt": "six==0.0.0.405\n"}

    async def start(c: HubClient, wid: str) -> list[str]:
        async with c.attach(wid) as s:
            told = [m for m in await notices(s) if m.startswith("No Python environment")]
        await c.stop_session(wid)
        return told

    async with workspace(hub, alice, "broken-again", files) as (c, wid):
        first = await start(c, wid)
        second = await start(c, wid)  # remembered: no build, and says so
        bad = await c.http.post(f"/api/workspaces/{wid}/session", json={"rebuild": "yes"})
        # Restart to rebuild (the Packages pane): tried again at once, failing afresh
        await c.request("POST", f"/api/workspaces/{wid}/session", json={"rebuild": True})
        third = await start(c, wid)
    assert len(first) == 1 and "building requirements.txt failed. The build's last" in first[0]
    assert (
        len(second) == 1 and "building requirements.txt failed 0 min ago and is not " in (second[0])
    ), second
    assert "Restart to rebuild in the Packages pane to retry now" in second[0]
    assert "six==0.0.0.405" in second[0]  # the remembered build's last lines
    assert len(third) == 1 and "building requirements.txt failed. The build's last" in third[0]
    assert bad.status_code == 422, bad.text
    assert bad.json()["error"]["code"], bad.text


async def test_overlay_installs_survive_a_restart_and_stay_in_their_workspace(
    hub: HubProcess, alice: str, tmp_path: Path
) -> None:
    tarball = make_tarball(tmp_path)
    async with workspace(hub, alice, "explore", {}) as (c, wid):
        explore = wid
        await c.upload(wid, {"tinypkg_0.1.0.tar.gz": tarball})
        async with c.attach(wid) as s:
            out = await py(
                s, "%pip install --quiet tomli==2.0.1\nimport tomli; print('tomli', tomli.__file__)"
            )
            assert "tomli " in out and "/overlays/" in out, out
            r = await s.run(
                'install.packages("tinypkg_0.1.0.tar.gz", repos = NULL, type = "source")\n'
                'cat(find.package("tinypkg"))',
                language="r",
            )
            assert "/overlays/" in r.stdout, r.stdout + r.stderr
        await c.stop_session(wid)
        async with c.attach(wid) as s:
            out = await py(s, "import tomli; print(tomli.__file__)")
            assert "/overlays/" in out, out
            r = await s.run('cat(tinypkg::hello(), find.package("tinypkg"))', language="r")
            assert r.stdout.startswith("hello from tinypkg") and "/overlays/" in r.stdout
            listed = await c.request("GET", f"/api/workspaces/{wid}/packages")
            assert source_of(listed, "python", "tomli") == ("2.0.1", "overlay")
            assert source_of(listed, "r", "tinypkg") == ("0.1.0", "overlay")
            assert source_of(listed, "python", "pandas")[1] == "base"
        # the workspace's files (and so the hub's file versions) hold none of it
        assert [f["path"] for f in await c.list_files(wid)] == ["tinypkg_0.1.0.tar.gz"]
    async with workspace(hub, alice, "elsewhere", {}) as (c, wid):
        async with c.attach(wid) as s:
            out = await py(s, "import importlib.util; print(importlib.util.find_spec('tomli'))")
            r = await s.run('cat(nzchar(system.file(package = "tinypkg")))', language="r")
    assert out.strip() == "None", out
    assert r.stdout == "FALSE"
    # a deleted workspace's overlay goes with it
    overlay = hub.data_dir / "overlays" / explore
    assert overlay.is_dir()
    async with HubClient(hub.url, alice) as c:
        await c.request("DELETE", f"/api/workspaces/{explore}")
    assert not overlay.exists()


PYPROJECT = '[project]\nname = "analysis"\nversion = "0.1.0"\ndependencies = ["six==1.16.0"]\n'


async def test_a_uv_lock_decides_the_versions(hub: HubProcess, alice: str, tmp_path: Path) -> None:
    """pyproject.toml with its uv.lock: the lock's versions (and hashes), not a new
    resolution of pyproject's looser dependency."""
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    uv = str(Path(sys.executable).parent / "uv")
    env = {**os.environ, "UV_SYSTEM_CERTS": "1"}
    lock = await asyncio.create_subprocess_exec(uv, "lock", "--project", str(tmp_path), env=env)
    assert await lock.wait() == 0
    files = {
        "pyproject.toml": PYPROJECT.replace("six==1.16.0", "six"),  # today: 1.17.0
        "uv.lock": (tmp_path / "uv.lock").read_text(),
    }
    async with workspace(hub, alice, "locked", files) as (c, wid):
        async with c.attach(wid) as s:
            out = await py(s, "import six; print(six.__version__, six.__file__)")
    assert out.startswith("1.16.0 /"), out
    env_dir = Path(out.split()[1]).parent.parent
    assert '"declaration": "uv.lock"' in (env_dir / "environment.json").read_text()


@pytest.mark.parametrize("kind", ["root", "unprivileged"])
async def test_a_session_cannot_write_into_a_shared_environment(kind: str) -> None:
    h = _start(kind)
    try:
        token = h.make_user("mallory")
        # what a hub that stopped mid-build left is swept before the first build
        stale = h.data_dir / "environments" / ".staging" / "python-stale"
        (stale / "out").mkdir(parents=True)
        if kind == "unprivileged":
            for p in (stale.parent.parent, stale.parent, stale, stale / "out"):
                os.chown(p, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        async with workspace(h, token, "w", {"requirements.txt": "six==1.16.0\n"}) as (c, wid):
            async with c.attach(wid) as s:
                out = await py(
                    s,
                    "import six, os, pathlib\n"
                    "p = pathlib.Path(six.__file__)\n"
                    "for attempt in (lambda: p.write_text('x=1'), lambda: p.unlink(),\n"
                    "                lambda: os.chmod(p, 0o666), lambda: (p.parent / 'evil.py').write_text('')):\n"
                    "    try:\n        attempt(); print('WROTE')\n"
                    "    except OSError as e:\n        print('refused', e.errno)\n",
                )
                assert "WROTE" not in out and out.count("refused") == 4, out
                # pip in the session goes to the overlay, never into the environment
                out = await py(
                    s,
                    "%pip install --quiet six==1.17.0\nimport importlib, six; print(six.__file__)",
                )
        assert not stale.exists()
        [env] = env_dirs(h, "python")
        assert (env / "site" / "six.py").read_text().startswith("# Copyright")
        assert not (env / "site" / "evil.py").exists()
    finally:
        h.close()


R_PKG_DESCRIPTION = """Package: tinypkg
Version: 0.1.0
Title: A Tiny Package
Description: Says hello.
License: MIT
Author: Test
Maintainer: Test <t@example.org>
"""


def make_tarball(tmp: Path) -> bytes:
    src = tmp / "tinypkg"
    (src / "R").mkdir(parents=True)
    (src / "DESCRIPTION").write_text(R_PKG_DESCRIPTION)
    (src / "NAMESPACE").write_text("export(hello)\n")
    (src / "R" / "hello.R").write_text('hello <- function() "hello from tinypkg"\n')
    subprocess.run(
        ["R", "CMD", "build", "--no-build-vignettes", str(src)],
        cwd=tmp,
        check=True,
        capture_output=True,
    )
    return (tmp / "tinypkg_0.1.0.tar.gz").read_bytes()


async def test_r_description_resolves_base_tarballs_and_names_what_is_missing(
    hub: HubProcess, alice: str, tmp_path: Path
) -> None:
    tarball = make_tarball(tmp_path)
    desc = "Package: analysis\nVersion: 1.0\nImports: jsonlite (>= 1.0), tinypkg,\n    stats\n"
    async with HubClient(hub.url, alice) as c:
        wid = (await c.ensure_workspace("r-env"))["id"]
        await c.save_text(wid, "DESCRIPTION", desc, 0)
        await c.upload(wid, {"packages/tinypkg_0.1.0.tar.gz": tarball})
        async with c.attach(wid) as s:
            r = await s.run(
                'cat(tinypkg::hello(), find.package("tinypkg"), find.package("jsonlite"), sep = "\\n")',
                language="r",
            )
            listed = await c.request("GET", f"/api/workspaces/{wid}/packages")
        assert source_of(listed, "r", "tinypkg") == ("0.1.0", "environment")
        assert source_of(listed, "r", "jsonlite")[1] == "base"
        lines = r.stdout.splitlines()
        assert lines[0] == "hello from tinypkg", r.stdout + r.stderr
        [env] = env_dirs(hub, "r")
        assert lines[1] == f"{env}/library/tinypkg"
        assert lines[2].startswith("/usr/lib/R/"), lines  # the Debian package, not rebuilt
        await c.stop_session(wid)
        await c.save_text(
            wid, "DESCRIPTION", desc.replace("tinypkg,", "tinypkg, notonthismachine,"), 1
        )
        async with c.attach(wid) as s:
            told = await notices(s)
        await c.stop_session(wid)
    [missing] = [m for m in told if m.startswith("No R environment in this session")]
    assert "notonthismachine" in missing and "r_repos" in missing and "tinypkg" not in missing
    # a renv.lock's versions are the machine's; a difference is said, not hidden
    lock = '{"Packages": {"jsonlite": {"Package": "jsonlite", "Version": "0.0.1"}}}'
    async with workspace(hub, alice, "renv", {"renv.lock": lock}) as (c, wid):
        async with c.attach(wid) as s:
            told = await notices(s)
            r = await s.run('cat(as.character(packageVersion("jsonlite")))', language="r")
    [differ] = [m for m in told if "versions differ" in m]
    assert f"jsonlite 0.0.1 → {r.stdout}" in differ, (differ, r.stdout)
    # a DESCRIPTION's version constraint the machine cannot meet: refused, with what it has
    too_new = {"DESCRIPTION": "Imports: jsonlite (>= 99.0)\n"}
    async with workspace(hub, alice, "too-new", too_new) as (c, wid):
        async with c.attach(wid) as s:
            told = await notices(s)
    [unmet] = [m for m in told if m.startswith("No R environment in this session")]
    assert f"jsonlite (>= 99.0): the base library has {r.stdout}" in unmet, unmet
    assert "tar.gz" in unmet and "r_repos" in unmet


async def test_r_packages_come_from_the_configured_mirror(tmp_path: Path) -> None:
    """``r_repos``: a declared package neither in the base library nor a workspace tarball
    is installed from the mirror — here a CRAN-like repository on this machine's disk
    (file://), which the build sees read-only (CRAN itself is not reachable here)."""
    contrib = tmp_path / "cran" / "src" / "contrib"
    contrib.mkdir(parents=True)
    (contrib / "tinypkg_0.1.0.tar.gz").write_bytes(make_tarball(tmp_path))
    r = await asyncio.create_subprocess_exec(
        "Rscript", "-e", f'tools::write_PACKAGES("{contrib}", type = "source")'
    )
    assert await r.wait() == 0
    h = HubProcess(
        Path(tempfile.mkdtemp(prefix="rsh-env-mirror-")) / "data",
        {"RSPARKHUB_R_REPOS": f"file://{tmp_path / 'cran'}"},
    ).start()
    try:
        token = h.make_user("maria")
        async with workspace(h, token, "mirrored", {"DESCRIPTION": "Imports: tinypkg\n"}) as (
            c,
            wid,
        ):
            async with c.attach(wid) as s:
                out = await s.run('cat(tinypkg::hello(), find.package("tinypkg"))', language="r")
                told = await notices(s)
        assert env_dirs(h, "r"), "\n".join(told)  # else the notices say why
        [env] = env_dirs(h, "r")
        assert out.stdout == f"hello from tinypkg {env}/library/tinypkg", out.stdout + out.stderr
        assert '"from_repos": [\n  "tinypkg"\n ]' in (env / "environment.json").read_text()
        # a constraint the mirror's version meets: its own environment, built and checked
        met = {"DESCRIPTION": "Imports: tinypkg (>= 0.1)\n"}
        async with workspace(h, token, "mirror-met", met) as (c, wid):
            async with c.attach(wid) as s:
                out = await s.run('cat(as.character(packageVersion("tinypkg")))', language="r")
        assert out.stdout == "0.1.0", out.stdout + out.stderr
        assert len(env_dirs(h, "r")) == 2
        # one it does not meet: the build fails and says what the mirror has
        unmet = {"DESCRIPTION": "Imports: tinypkg (>= 99.0)\n"}
        async with workspace(h, token, "mirror-unmet", unmet) as (c, wid):
            async with c.attach(wid) as s:
                told = await notices(s)
                code = 'cat(requireNamespace("tinypkg", quietly = TRUE))'
                out = await s.run(code, language="r")
        [failed] = [m for m in told if m.startswith("No R environment in this session")]
        mirror = f"file://{tmp_path / 'cran'}"
        assert f"tinypkg (>= 99.0) is asked for: the mirror {mirror} has 0.1.0" in failed, told
        assert out.stdout == "FALSE" and len(env_dirs(h, "r")) == 2
    finally:
        h.close()
