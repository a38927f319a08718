"""Building one environment: in a sandbox, under an identity that is no user's, into a
staging directory that is sealed read-only and moved into place.

Owns the ``DATA_DIR/environments`` tree: ``python/<key>/site`` (``uv pip install --target``)
and ``r/<key>/library`` (``install.packages`` of workspace tarballs or a mirror's packages),
``.staging/`` while a build runs. Must not: decide *what* to build (``declarations.py``)
nor when (``__init__``).

Why this way (docs/environments.md, "Security"): a build runs package code (an sdist's
``setup.py``, ``R CMD INSTALL``), and the result is shared by every session and user with
the same declaration. So the build runs through the same launcher as sessions (no
capabilities, seccomp, own namespaces, a cgroup) but under ``environment_build_uid`` on a
root hub — a uid outside the users' range, so no user's session can write its staging
directory — seeing only its staging directory (the declaration is copied in), Python, the
package and ``/usr``. When it ends its sandbox is killed (nothing it started lives on),
then the hub seals the output (owned by the hub's uid, every write bit off, symlinks left
untouched) and renames it into place: from then on nobody writes it, and sessions get it
through a read-only bind mount. An unprivileged hub has one uid for everything: there the
read-only mount and the cleared write bits are what keep sessions out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from rsparkhub.hub.sandbox import Identity, Limits, Network, Sandboxes, SandboxSpec
from rsparkhub.pipe_reader import PipeReader

Progress = Callable[[str], Awaitable[None]]
LOG_TAIL_LINES = 30
USED = ".used"  # <kind>-<key>: its mtime is when a session was last given it (gc.py)
PROGRESS_GAP_S = 0.25


@dataclass(frozen=True)
class BuildResult:
    path: Path | None  # the sealed environment, None when the build failed
    built: bool  # False: it was in the cache
    error: str | None = None
    failed_ago_s: float | None = None  # not tried now: it failed this long ago


def uv_binary() -> str:
    """uv from this Python's own environment (a dependency of rsparkhub), else PATH."""
    own = Path(sys.executable).parent / "uv"
    return str(own) if own.exists() else (shutil.which("uv") or "uv")


class Builder:
    def __init__(
        self,
        root: Path,
        sandboxes: Sandboxes | None,
        identity: Identity,
        limits: Limits,
        masked: list[str],
        timeout_s: float,
        failed_retry_s: float = 0,
    ) -> None:
        self.root = root
        self.failed_retry_s = failed_retry_s
        # "kind/key" -> (when it failed, its last lines): not retried for failed_retry_s,
        # so a broken declaration does not cost a build at every session start
        self._failed: dict[str, tuple[float, str | None]] = {}
        self.sandboxes = sandboxes
        self.identity = identity
        self.limits = limits
        self.masked = masked
        self.timeout_s = timeout_s
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, kind: str, key: str) -> asyncio.Lock:
        """Held while ``kind/key`` is looked up, built or removed (gc.py)."""
        return self._locks.setdefault(f"{kind}/{key}", asyncio.Lock())

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def failed_ago(self, kind: str, key: str, force: bool = False) -> float | None:
        """Seconds since ``kind/key``'s build failed, while that is less than
        ``failed_retry_s`` (and not ``force``): it is not tried again. Else None."""
        failed = self._failed.get(f"{kind}/{key}")
        if failed is None or force:
            return None
        ago = time.monotonic() - failed[0]
        return ago if ago < self.failed_retry_s else None

    def _mark_used(self, kind: str, key: str) -> None:
        mark = self.root / USED / f"{kind}-{key}"
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.touch()
        os.utime(mark)

    def sweep(self) -> None:
        """Kill the build sandboxes and remove the staging directories an earlier hub
        process left (it stopped while building): nothing of them is ever used."""
        if self.sandboxes is not None:
            for name in self.sandboxes.names():
                if name.startswith("envbuild-"):
                    self.sandboxes.kill(name)
        remove_tree(self.root / ".staging")

    async def ensure(
        self,
        kind: str,
        key: str,
        inputs: dict[str, bytes],
        argv: Callable[[Path], list[str]],
        outbound: bool,
        progress: Progress,
        describe: dict[str, object],
        shown: tuple[Path, ...] = (),
        force: bool = False,
    ) -> BuildResult:
        """The environment ``kind/key``: from the cache, else built once (concurrent
        sessions with the same key wait for the one build). ``shown``: host directories
        the build also sees, read-only (a mirror on disk). A key whose build failed less
        than ``failed_retry_s`` ago is not tried again unless ``force``."""
        final = self.path(kind, key)
        async with self.lock(kind, key):
            if await asyncio.to_thread(final.is_dir):
                await asyncio.to_thread(self._mark_used, kind, key)
                return BuildResult(final, built=False)
            ago = self.failed_ago(kind, key, force)
            if ago is not None:
                error = self._failed[f"{kind}/{key}"][1]
                return BuildResult(None, built=False, error=error, failed_ago_s=ago)
            staging = self.root / ".staging" / f"{kind}-{key[:16]}-{secrets.token_hex(4)}"
            try:
                await asyncio.to_thread(_make_staging, staging, inputs)
                ok, tail = await self._run(
                    kind, key, staging, argv(staging), outbound, progress, shown
                )
                if not ok:
                    self._failed[f"{kind}/{key}"] = (time.monotonic(), tail)
                    return BuildResult(None, built=True, error=tail)
                self._failed.pop(f"{kind}/{key}", None)
                meta = {**describe, "key": key, "built_at": time.time(), "log_tail": tail}
                await asyncio.to_thread(_seal_and_place, staging / "out", final, meta)
                await asyncio.to_thread(self._mark_used, kind, key)
                return BuildResult(final, built=True)
            finally:
                await asyncio.to_thread(remove_tree, staging)

    async def _run(
        self,
        kind: str,
        key: str,
        staging: Path,
        argv: list[str],
        outbound: bool,
        progress: Progress,
        shown: tuple[Path, ...] = (),
    ) -> tuple[bool, str]:
        name = f"envbuild-{kind}-{key[:16]}"
        r, w = os.pipe()
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(staging / "home"),
            "TMPDIR": str(staging / "tmp"),
            "UV_CACHE_DIR": str(staging / "cache"),  # per build: no cache shared between builds
            "UV_LINK_MODE": "copy",
            "UV_NO_PROGRESS": "1",
            "UV_SYSTEM_CERTS": "1",  # the machine's CA store (a proxy's CA included)
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        spec = SandboxSpec(
            name=name,
            identity=self.identity,
            argv=argv,
            env=env,
            chdir=str(staging),
            binds=[(staging, str(staging))],
            ro_binds=(self.sandboxes.runtime_binds() if self.sandboxes else [])
            + [(p, str(p)) for p in shown],
            masked=self.masked,
            network=Network(outbound=outbound),
            limits=self.limits,
            stdout=w,
        )
        tail: list[str] = []
        try:
            if self.sandboxes is None:
                raise OSError("no sandbox to build in")
            proc = await self.sandboxes.spawn(spec)
        except (OSError, ValueError) as exc:
            os.close(r)
            return False, f"the build could not start: {exc}"
        finally:
            os.close(w)
        loop = asyncio.get_running_loop()
        pipe = PipeReader(r, limit=1 << 20)
        reader = pipe.stream
        last = 0.0

        async def pump() -> None:
            nonlocal last
            while line := await reader.readline():
                text = line.decode(errors="replace").rstrip()
                if not text:
                    continue
                tail.append(text)
                del tail[:-LOG_TAIL_LINES]
                now = loop.time()
                if now - last >= PROGRESS_GAP_S:
                    last = now
                    await progress(f"environment ({kind}): {text[:300]}")

        try:
            await asyncio.wait_for(asyncio.gather(pump(), proc.wait()), self.timeout_s)
        except TimeoutError:
            tail.append(f"the build took longer than {self.timeout_s:.0f} s and was stopped")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        finally:
            pipe.close()
            if self.sandboxes is not None:
                await asyncio.to_thread(self.sandboxes.kill, name)
        if tail:
            await progress(f"environment ({kind}): {tail[-1][:300]}")
        return proc.returncode == 0, "\n".join(tail)


def _make_staging(staging: Path, inputs: dict[str, bytes]) -> None:
    for d in ("out", "home", "tmp", "cache", "input"):
        (staging / d).mkdir(parents=True, exist_ok=True)
    for rel, data in inputs.items():
        dest = staging / "input" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


def _seal(top: Path) -> None:
    """Every file and directory under ``top`` owned by the hub's uid (a root hub) and
    read-only for everyone (``top`` itself: its owner only); symlinks are not followed."""
    uid, gid = os.geteuid(), os.getegid()
    for root, dirs, files in os.walk(top, topdown=False):
        for n in (*files, *dirs):
            p = os.path.join(root, n)
            st = os.lstat(p)
            if uid == 0:
                os.lchown(p, uid, gid)
            if stat.S_ISLNK(st.st_mode):
                continue
            execute = 0o555 if st.st_mode & 0o111 or stat.S_ISDIR(st.st_mode) else 0o444
            os.chmod(p, execute)
    if uid == 0:
        os.chown(top, uid, gid)


def _seal_and_place(out: Path, final: Path, meta: dict[str, object]) -> None:
    (out / "environment.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    _seal(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(final.parent, 0o755)
    try:
        # moving a directory to another parent needs it writable (its ".."): the top is
        # sealed once in place (the build's sandbox is gone; only the hub's uid is here)
        os.rename(out, final)
    except OSError:
        if not final.is_dir():  # another hub placed the same key first: keep theirs
            raise
        return
    os.chmod(final, 0o555)


def remove_tree(path: Path) -> None:
    """rmtree, also of sealed (read-only) directories; links are removed, not followed."""
    if not path.exists() and not path.is_symlink():
        return
    if os.geteuid() != 0:  # root needs no write bits; others make directories writable
        for root, dirs, _files in os.walk(path):
            for d in dirs:
                p = os.path.join(root, d)
                if not os.path.islink(p):
                    with contextlib.suppress(OSError):
                        os.chmod(p, 0o700)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
    shutil.rmtree(path, ignore_errors=True)
