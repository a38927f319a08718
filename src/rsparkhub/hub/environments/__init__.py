"""Workspace environments: declared packages built once into immutable, content-addressed
directories shared by every session with the same declaration, plus a per-workspace
overlay for what a session installs while exploring (docs/environments.md).

``Environments.prepare`` runs when a session starts (``Lifecycle._start``): it reads the
workspace's declaration files, resolves them, takes each environment from the cache or has
``build.Builder`` build it (progress to the session's clients), and returns what the
spawner mounts and the variables the agent gives its kernels. It never fails a session:
a declaration that cannot be built becomes a notice saying why, and the session starts
with the base packages.

Variables (read by ``agent/packages.py``): ``RSPARKHUB_ENV_PYTHON`` (a ``site`` directory
put on the kernels' ``PYTHONPATH``), ``RSPARKHUB_ENV_R`` (a library put on ``R_LIBS``),
``RSPARKHUB_OVERLAY`` (the workspace's overlay: ``python/`` and ``r/``, first on both).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from rsparkhub.config import Settings
from rsparkhub.hub.blobs import BlobStore
from rsparkhub.hub.db.engine import Database
from rsparkhub.hub.db.models import Project, Workspace, WorkspaceMember
from rsparkhub.hub.environments import declarations as D
from rsparkhub.hub.environments import gc
from rsparkhub.hub.environments.build import Builder, BuildResult, remove_tree, uv_binary
from rsparkhub.hub.files import list_files
from rsparkhub.hub.sandbox import Identity, Limits, Sandboxes, disk, sandboxes_for

log = logging.getLogger("rsparkhub.environments")
Progress = Callable[[str], Awaitable[None]]

_R_BASE_PROBE = (
    "ip <- installed.packages(lib.loc = .Library.site); ip <- rbind(ip, installed.packages(lib.loc = .Library)); "
    'cat(R.version$major, ".", R.version$minor, "\\n", sep = ""); '
    'cat(paste(ip[, "Package"], ip[, "Version"], sep = "\\t"), sep = "\\n")'
)


@dataclass
class Prepared:
    """What a session gets: variables for its agent, directories to mount, notices."""

    env: dict[str, str] = field(default_factory=dict)
    ro_binds: list[tuple[Path, str]] = field(default_factory=list)
    binds: list[tuple[Path, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    built: list[str] = field(default_factory=list)  # "python/<key>" of builds made now
    used: list[str] = field(default_factory=list)  # "python/<key>" of all it is given


def build_sandboxes(settings: Settings, spawner: object) -> Sandboxes | None:
    """The sandboxes builds run in: the local spawner's; on Kubernetes, with
    ``kubernetes_environments_claim`` set, the hub pod's own bubblewrap (the hub builds as a
    local hub does, onto that volume; session pods mount it: spawners/k8s_environments.py).
    None: no environments."""
    own: Sandboxes | None = getattr(spawner, "sandboxes", None)
    if own is not None:
        return own
    if settings.spawner == "kubernetes" and settings.kubernetes_environments_claim:
        return sandboxes_for(settings, enabled=True)
    return None


def overlay_dir(data_dir: Path, workspace_id: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", workspace_id):
        raise ValueError(f"not a workspace id: {workspace_id!r}")
    return data_dir / "overlays" / workspace_id


def overlay_image(data_dir: Path, workspace_id: str) -> Path:
    """The overlay's own disk (``overlay_disk_mb``; sandbox/disk.py), next to the session
    disks and never inside anything a session sees."""
    return (
        data_dir / "session-disks" / "overlays" / f"{overlay_dir(data_dir, workspace_id).name}.img"
    )


class Environments:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: BlobStore,
        sandboxes: Sandboxes | None,
        limits: Limits | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        root_hub = sandboxes is not None and sandboxes.mode.name == "root"
        build_uid = settings.environment_build_uid
        identity = (
            Identity(build_uid, build_uid) if root_hub else Identity(os.getuid(), os.getgid())
        )
        self.builder = Builder(
            settings.data_dir / "environments",
            sandboxes if sandboxes is not None and sandboxes.bwrap else None,
            identity,
            limits or Limits(),
            [str(settings.data_dir.resolve())],
            settings.environment_build_timeout_s,
            settings.environment_failed_retry_s,
        )
        self._rebuild: set[str] = set()  # workspaces whose next start retries failed builds
        self._gc_at = 0.0  # monotonic time of the last garbage collection
        self._gc_task: asyncio.Task[list[str]] | None = None
        self._python: tuple[str, str] | None = None  # (executable, "CPython 3.x.y")
        self._r: tuple[str, dict[str, str]] | None = None  # (R version, base packages)
        self._swept: asyncio.Future[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.environments and self.builder.sandboxes is not None

    def rebuild_next(self, workspace_id: str) -> None:
        """The workspace's next session start retries a build that failed recently
        (**Restart to rebuild**)."""
        self._rebuild.add(workspace_id)

    async def prepare(self, workspace_id: str, progress: Progress) -> Prepared:
        out = Prepared()
        if not self.enabled:
            return out
        force = workspace_id in self._rebuild
        self._rebuild.discard(workspace_id)
        if self._swept is None:  # what a hub that stopped mid-build left, before any build
            self._swept = asyncio.ensure_future(asyncio.to_thread(self.builder.sweep))
        await self._swept
        self._maybe_collect()
        await self._prepare_overlay(workspace_id, out)
        files = await self._declaration_files(workspace_id)
        for lang, step in (("Python", self._prepare_python), ("R", self._prepare_r)):
            try:
                await step(files, out, progress, force)
            except D.DeclarationError as exc:
                out.notices.append(f"No {lang} environment in this session: {exc}")
            except Exception as exc:  # a session starts anyway, and says why
                log.exception("preparing the %s environment of %s failed", lang, workspace_id)
                out.notices.append(f"No {lang} environment in this session: {exc}")
        return out

    async def _prepare_overlay(self, workspace_id: str, out: Prepared) -> None:
        overlay = overlay_dir(self.settings.data_dir, workspace_id)
        if self.settings.spawner == "kubernetes":
            # the session pod's overlay is a subPath of the user's volume, made by its init
            # container (spawners/k8s_environments.py): nothing of it lives on the hub
            out.binds.append((overlay, str(overlay)))
            out.env["RSPARKHUB_OVERLAY"] = str(overlay)
            return
        try:
            # its own capped file system (a root hub), so what a session installs or writes
            # there cannot fill the hub's disk; mounted once, kept for the next sessions
            await asyncio.to_thread(
                disk.mount_persistent,
                overlay_image(self.settings.data_dir, workspace_id),
                overlay,
                self.settings.overlay_disk_mb,
            )
            await asyncio.to_thread(_make_overlay, overlay)
            out.binds.append((overlay, str(overlay)))
            out.env["RSPARKHUB_OVERLAY"] = str(overlay)
        except (OSError, subprocess.CalledProcessError) as exc:  # e.g. session code replaced
            # python/ with a dangling link; or the overlay's disk could not be mounted
            out.notices.append(
                "No package overlay in this session (pip install and install.packages have "
                f"nowhere to install): {exc}. Removing the workspace's overlay directory "
                f"({overlay}) on the hub gives the next session a fresh one."
            )

    def _maybe_collect(self) -> None:
        """Start a garbage collection of unused environments (gc.py) in the background when
        ``environment_gc_after_days`` is set and the last one is an hour (or that period,
        if shorter) ago."""
        keep_s = self.settings.environment_gc_after_days * 86400
        now = time.monotonic()
        if keep_s <= 0 or now - self._gc_at < min(3600.0, keep_s):
            return
        if self._gc_task is not None and not self._gc_task.done():
            return
        self._gc_at = now
        self._gc_task = asyncio.ensure_future(self._collect(keep_s))

    async def _collect(self, keep_s: float) -> list[str]:
        try:
            return await gc.collect(self.builder, self.db, keep_s)
        except Exception:  # a failed collection must not fail anything else
            log.exception("removing unused environments failed")
            return []

    async def user_overlays(self, user_id: str) -> tuple[str, ...]:
        """The workspaces whose overlays a user's own storage keeps: every workspace they
        own or are a member of (``SessionSpec.keep_overlays``). An overlay of any other
        workspace (deleted, or the user removed from it) is of no use any more."""
        async with self.db.session() as db:
            owned = select(Workspace.id).join(Project).where(Project.owner_id == user_id)
            member = select(WorkspaceMember.workspace_id).where(WorkspaceMember.user_id == user_id)
            ids = (await db.execute(owned.union(member))).scalars().all()
        return tuple(sorted(ids))

    async def remove_overlay(self, workspace_id: str) -> None:
        """Delete the workspace's overlay (the workspace was deleted)."""
        overlay = overlay_dir(self.settings.data_dir, workspace_id)
        image = overlay_image(self.settings.data_dir, workspace_id)
        await asyncio.to_thread(disk.remove_persistent, image, overlay)
        await asyncio.to_thread(remove_tree, overlay)

    async def _declaration_files(self, workspace_id: str) -> dict[str, bytes]:
        wanted = (*D.PYTHON_FILES, *D.R_FILES)
        async with self.db.session() as db:
            rows = [
                (f.path, f.sha256)
                for f in await list_files(db, workspace_id)
                if f.path in wanted or D.tarball_name(f.path) is not None
            ]
        return {path: await self.blobs.get(sha) for path, sha in rows}

    # ------------------------------------------------------------------ Python
    async def _prepare_python(
        self, files: dict[str, bytes], out: Prepared, progress: Progress, force: bool
    ) -> None:
        decl = D.python_declaration(files)
        if decl is None or not decl.requirements:
            return
        exe, version = await self._python_interpreter()
        key = decl.key(version)

        site = ["--target", "{out}/site", "--python", exe]
        if decl.lock is None:
            inputs = {"requirements.txt": decl.text().encode()}
            command = [uv_binary(), "pip", "install", *site, "-r", "{input}/requirements.txt"]
        else:  # the lock's versions and hashes, exported by uv itself (it runs no code)
            inputs = {p: files[p] for p in ("pyproject.toml", "uv.lock")}
            command = [
                "/bin/sh", "-ec",
                '"$0" export --frozen --no-dev --no-emit-project --format requirements-txt '
                '--project "$1" -o "$1/requirements.txt"; shift; exec "$@"',
                uv_binary(), "{input}", uv_binary(), "pip", "install", *site,
                "-r", "{input}/requirements.txt",
            ]  # fmt: skip

        def argv(staging: Path) -> list[str]:
            where = {"out": str(staging / "out"), "input": str(staging / "input")}
            return [a.format(**where) for a in command]

        if self.builder.failed_ago("python", key, force) is None and not await asyncio.to_thread(
            self.builder.path("python", key).is_dir
        ):
            await progress(f"environment (python): building {decl.source} ({key[:12]})")
        result = await self.builder.ensure(
            "python", key, inputs, argv, True, progress,
            {"declaration": decl.source, "requirements": list(decl.requirements),
             "interpreter": version},
            force=force,
        )  # fmt: skip
        await self._use(result, "python", key, decl.source, out, progress)
        if result.path is not None:
            out.env["RSPARKHUB_ENV_PYTHON"] = str(result.path / "site")

    async def _python_interpreter(self) -> tuple[str, str]:
        if self._python is None:
            exe = await asyncio.to_thread(_kernel_python)
            proc = await asyncio.create_subprocess_exec(
                exe, "-c", "import platform;print(platform.python_implementation(),"
                " platform.python_version())",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, _ = await proc.communicate()
            self._python = (exe, stdout.decode().strip())
        return self._python

    # ------------------------------------------------------------------ R
    async def _prepare_r(
        self, files: dict[str, bytes], out: Prepared, progress: Progress, force: bool
    ) -> None:
        decl = D.r_declaration(files)
        if decl is None or not decl.packages:
            return
        r_version, base = await self._r_base()
        repos = self.settings.r_repos
        plan = D.plan_r(decl, base, list(files), repos, r_version)
        if plan.unmet:
            raise D.DeclarationError(
                f"{decl.source} asks for versions this machine cannot give: "
                f"{'; '.join(plan.unmet)}. Put a package's source tarball of a version that "
                f"meets it in {D.TARBALL_DIR}/ (R CMD build names it <name>_<version>.tar.gz), "
                "ask an administrator for a CRAN/PPM mirror (r_repos, RSPARKHUB_R_REPOS), or "
                "relax the constraint."
            )
        if plan.missing:
            names = ", ".join(plan.missing)
            raise D.DeclarationError(
                f"{decl.source} declares {names}, which this machine cannot install: "
                f"{'it is' if len(plan.missing) == 1 else 'they are'} not in the base library "
                f"(Debian r-cran-* packages), there is no {D.TARBALL_DIR}/<name>_<version>.tar.gz "
                "in the workspace, and no CRAN/PPM mirror is configured (an administrator "
                "can set r_repos, RSPARKHUB_R_REPOS)."
            )
        differ = decl.version_differences(plan)
        if differ:  # said, not enforced: the machine has one version of each
            out.notices.append(
                f"environment (r): {decl.source}'s versions differ from this machine's, "
                f"which the session uses: {', '.join(differ)}."
            )
        if not plan.needs_build:
            await progress(f"environment (r): {', '.join(decl.packages)} from the base library")
            return
        key = plan.key(files, r_version, repos)
        inputs = {p: files[p] for p in plan.tarballs.values()}
        # paths relative to the staging directory, where the build runs
        tarballs = [f"input/{p}" for p in plan.tarballs.values()]
        inputs["build.R"] = _r_build_script(
            tarballs, plan.from_repos, repos, plan.repo_constraints
        ).encode()

        def argv(staging: Path) -> list[str]:
            return ["Rscript", "--vanilla", str(staging / "input" / "build.R")]

        if self.builder.failed_ago("r", key, force) is None and not await asyncio.to_thread(
            self.builder.path("r", key).is_dir
        ):
            await progress(f"environment (r): building {decl.source} ({key[:12]})")
        # a mirror on this machine's disk (file://): the build sees it, read-only
        local = repos[len("file://") :] if repos and repos.startswith("file://") else None
        shown = (Path(local),) if plan.from_repos and local else ()
        result = await self.builder.ensure(
            "r", key, inputs, argv, bool(plan.from_repos) and not local, progress,
            {"declaration": decl.source, "tarballs": plan.tarballs,
             "from_repos": plan.from_repos, "base": plan.base, "r": r_version},
            shown,
            force,
        )  # fmt: skip
        await self._use(result, "r", key, decl.source, out, progress)
        if result.path is not None:
            out.env["RSPARKHUB_ENV_R"] = str(result.path / "library")

    async def _r_base(self) -> tuple[str, dict[str, str]]:
        if self._r is None:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
            proc = await asyncio.create_subprocess_exec(
                "Rscript", "--vanilla", "-e", _R_BASE_PROBE,
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, stderr = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"R could not list its packages: {stderr.decode()[-300:]}")
            lines = stdout.decode().splitlines()
            base = dict(line.split("\t", 1) for line in lines[1:] if "\t" in line)
            self._r = (lines[0].strip(), base)
        return self._r

    # ------------------------------------------------------------------ shared
    async def _use(
        self,
        result: BuildResult,
        kind: str,
        key: str,
        source: str,
        out: Prepared,
        progress: Progress,
    ) -> None:
        if result.path is None and result.failed_ago_s is not None:
            out.notices.append(
                f"No {'Python' if kind == 'python' else 'R'} environment in this session: "
                f"building {source} failed {result.failed_ago_s / 60:.0f} min ago and is not "
                f"retried for {self.settings.environment_failed_retry_s / 60:.0f} min after a "
                "failure (environment_failed_retry_s); change the declaration, or Restart to "
                f"rebuild in the Packages pane to retry now. The build's last lines:\n"
                f"{result.error}"
            )
            return
        if result.path is None:
            out.notices.append(
                f"No {'Python' if kind == 'python' else 'R'} environment in this session: "
                f"building {source} failed. The build's last lines:\n{result.error}"
            )
            return
        out.ro_binds.append((result.path, str(result.path)))
        out.used.append(f"{kind}/{key}")
        if result.built:
            out.built.append(f"{kind}/{key}")
        how = "built" if result.built else "from the cache"
        await progress(f"environment ({kind}): {source} → {key[:12]} ({how})")


def _kernel_python() -> str:
    import sys

    from jupyter_client.kernelspec import KernelSpecManager

    try:
        return str(KernelSpecManager().get_kernel_spec("python3").argv[0])
    except Exception:  # noqa: BLE001 - no kernelspec: the hub's own Python
        return sys.executable


def _make_overlay(overlay: Path) -> None:
    """The overlay and its two libraries. Its contents are the session's: only missing
    directories are made (never through a link the session put there)."""
    overlay.mkdir(parents=True, exist_ok=True)
    for d in (overlay / "python", overlay / "r"):
        if d.is_symlink() or (d.exists() and not d.is_dir()):
            raise OSError(f"{d.name}/ in the overlay is not a directory")
        d.mkdir(exist_ok=True)


def _r_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _r_build_script(
    tarballs: list[str],
    names: list[str],
    repos: str | None,
    constraints: list[D.Constraint] | None = None,
) -> str:
    """install.packages of the tarballs, then of ``names`` from ``repos``, into
    ``out/library`` (run in the staging directory); fails unless all are there. The
    mirror's versions of ``constraints``' packages are checked before installing (and what
    was installed after): one that does not meet its constraint fails the build, named."""

    def vec(xs: list[str]) -> str:  # (an empty c() is NULL, which basename() refuses)
        return "c(" + ", ".join(_r_string(x) for x in xs) + ")" if xs else "character(0)"

    cs = constraints or []
    return f"""
options(warn = 1)
dir.create("out/library", recursive = TRUE, showWarnings = FALSE)
lib <- normalizePath("out/library")
.libPaths(c(lib, .libPaths()))
repos <- {_r_string(repos or "")}
need <- data.frame(name = {vec([c.name for c in cs])}, op = {vec([c.op for c in cs])},
                   version = {vec([c.version for c in cs])}, stringsAsFactors = FALSE)
unmet <- function(versions, where) {{  # versions: named by package; the constraints not met
    out <- character(0)
    for (i in seq_len(nrow(need))) {{
        have <- versions[need$name[i]]
        if (is.na(have)) next  # not there: said below
        ok <- get(need$op[i])(package_version(have), package_version(need$version[i]))
        if (!ok) out <- c(out, sprintf("%s (%s %s) is asked for: %s has %s", need$name[i],
                                       need$op[i], need$version[i], where, have))
    }}
    if (length(out)) {{
        message(paste(out, collapse = "\n"))
        quit(status = 1)
    }}
}}
for (t in {vec(tarballs)}) {{
    message("installing ", basename(t))
    install.packages(t, lib = lib, repos = NULL, type = "source")
}}
wanted <- {vec(names)}
if (nrow(need)) {{
    ap <- available.packages(repos = repos)
    unmet(setNames(ap[, "Version"], rownames(ap)), paste("the mirror", repos))
}}
if (length(wanted)) install.packages(wanted, lib = lib, repos = repos)
expected <- sub("_.*$", "", basename({vec(tarballs)}))
ip <- installed.packages(lib.loc = lib)
got <- rownames(ip)
missing <- setdiff(c(expected, wanted), got)
if (length(missing)) {{
    message("not installed: ", paste(missing, collapse = ", "))
    quit(status = 1)
}}
unmet(setNames(ip[, "Version"], got), "the installed library")
message("installed: ", paste(got, collapse = ", "))
"""
