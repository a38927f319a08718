"""Starting a process in a sandbox of its own: the one place where isolation is decided.

Owns: the command line that switches to the user's uid (root hub), gives the process its
own network namespace (pasta, with explicit port forwards), and its own user, PID, IPC,
UTS and mount namespaces (bubblewrap: only the system directories, a fresh /proc, private
/tmp and /dev/shm, no capabilities, no new privileges, the seccomp filter); the cgroup it
starts in; and what ``doctor`` reports about all of it. Sessions (spawners/local.py) and
the per-user Spark servers (spark.py) both start through ``Sandboxes.spawn``.

Must not: decide which ports or directories a caller needs (the caller names them), nor
keep state beyond the cgroup names it was given.

    setpriv --reuid U --regid G --clear-groups --inh-caps=-all      (root hub only)
      pasta --no-map-gw [-4] [--config-net] -t FROM_HOST -T TO_HOST -u none -U none
        /bin/sh -c QUICKACK                       (loopback routes: quick ACKs, below)
        bwrap --unshare-user --uid U --disable-userns --unshare-pid … --cap-drop ALL
              --seccomp FD --ro-bind /usr … --proc /proc --tmpfs /tmp … -- ARGV

Running bubblewrap as root with ``--uid`` is not isolation (the inside uid still maps to
host root), so a root hub switches to the user's own uid *before* anything else runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsparkhub.hub.sandbox import cgroups as cg
from rsparkhub.hub.sandbox import child, seccomp
from rsparkhub.hub.sandbox.cgroups import Limits
from rsparkhub.hub.sandbox.child import Child
from rsparkhub.hub.sandbox.mounts import (
    bind,
    bind_read_only_whole,
    is_mount,
    make_shared,
    umount,
)

if TYPE_CHECKING:
    from rsparkhub.config import Settings

# /etc entries a session may need (loader, certificates, R, Java, fonts, time zones, DNS).
# Everything else of /etc (shadow, ssh keys, the hub's config) stays out.
ETC = (
    "alternatives", "ca-certificates", "ca-certificates.conf", "ssl", "pki",
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "zoneinfo",
    "resolv.conf", "hosts", "host.conf", "gai.conf", "nsswitch.conf", "protocols", "services",
    "mime.types", "R", "java-17-openjdk", "fonts", "papersize", "locale.alias", "os-release",
    "debian_version", "mailcap", "magic", "magic.mime", "inputrc", "bash.bashrc", "profile",
    "terminfo", "xdg", "ImageMagick-6", "texmf", "dpkg",
)  # fmt: skip
# Run by pasta inside the new network namespace (where it holds CAP_NET_ADMIN), before
# bwrap: quick ACKs on the namespace's loopback routes. pasta (passt 2023-03) writes the
# data it forwards with Nagle on, so a request sent as two small writes (gRPC: headers, then
# data) waited for the receiver's delayed ACK: ~44 ms in one round trip of six through a
# -T forward (measured; none with this). Best effort: without iproute2, or with -4 (the
# ::1 lines fail), the sandbox starts all the same.
QUICKACK = """\
ip -force -batch - 2>/dev/null <<'E'
route replace local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1
route del local ::1 dev lo table local
route add local ::1 dev lo table local proto kernel quickack 1
E
exec "$@"
"""
OOM_DIR = "/run/rsparkhub/cgroup"
STAGE = Path(
    "/run/rsparkhub/stage"
)  # views of directories the uid cannot reach by path  # the sandbox's own memory cgroup, read-only (OOM counts)


@dataclass(frozen=True)
class Identity:
    """The host uid/gid a user's sandboxes run under."""

    uid: int
    gid: int


@dataclass(frozen=True)
class Network:
    """What a sandbox reaches. ``to_host``: host loopback TCP ports reachable from inside as
    127.0.0.1:PORT. ``from_host``: host loopback ports forwarded to the same port inside (the
    hub and other sandboxes reach a server listening inside). ``outbound``: other hosts."""

    to_host: tuple[int, ...] = ()
    from_host: tuple[int, ...] = ()
    outbound: bool = True


@dataclass
class SandboxSpec:
    name: str  # unique: the cgroup name, e.g. "session-<id>" or "spark-<user id>"
    identity: Identity
    argv: list[str]
    env: dict[str, str]
    chdir: str
    binds: list[tuple[Path, str]] = field(default_factory=list)  # read-write
    ro_binds: list[tuple[Path, str]] = field(default_factory=list)
    # Paths inside that show an empty read-only directory (the hub's data dir, where the
    # binds of the sandbox's own directories are mounted), so nothing can be made there.
    masked: list[str] = field(default_factory=list)
    network: Network = field(default_factory=Network)
    limits: Limits = field(default_factory=Limits)
    stdout: int | None = None  # fd for stdout and stderr
    stdin_pipe: bool = False
    pass_fds: tuple[int, ...] = ()  # further fds the sandboxed command inherits
    # Directories inside (empty at start) where ``Sandboxes.late_bind`` can add read-write
    # binds while the sandbox runs (a pooled session's workspace overlay; root hub only).
    late_dirs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mode:
    """The isolation this hub can give, as ``doctor`` reports it."""

    name: str  # "root" | "unprivileged" | "none"
    sandbox: str  # "bubblewrap" | "none"
    network: str  # "pasta" | "host"
    cgroups: str  # "v1" | "v2" | "none"
    reason: str


def _tun_usable() -> bool:
    """pasta needs /dev/net/tun (a root hub makes it usable, see ``ensure_tun_mode``)."""
    if not os.path.exists("/dev/net/tun"):
        return False
    return os.access("/dev/net/tun", os.R_OK | os.W_OK) if os.geteuid() else True


def ensure_tun_mode() -> None:
    """pasta opens /dev/net/tun as the session's uid. The usual mode is 0666; some hosts
    ship 0600, which only root can use: a root hub restores the usual mode."""
    path = "/dev/net/tun"
    with contextlib.suppress(OSError):
        st = os.stat(path)
        if os.geteuid() == 0 and stat.S_ISCHR(st.st_mode) and (st.st_mode & 0o666) != 0o666:
            os.chmod(path, 0o666)


class Sandboxes:
    """Starts sandboxed processes and manages their cgroups."""

    def __init__(
        self,
        enabled: bool = True,
        scope: str = "",
        cgroup_manager: cg.NoCgroups | None = None,
        ipv6: bool = False,
    ) -> None:
        # Several hubs may share a machine (and its cgroupfs): every name is scoped by
        # the hub (``scope_for(data_dir)``), so one hub never touches another's sandboxes.
        self.scope = scope
        self.bwrap = shutil.which("bwrap") if enabled else None
        self.pasta = shutil.which("pasta") if enabled else None
        self.setpriv = shutil.which("setpriv")
        self.root = os.geteuid() == 0
        # Without IPv6 (``-4``) pasta leaves its IPv6 buffers untouched: ~10 MiB less each.
        self.ipv6 = ipv6
        if self.bwrap and self.root:
            ensure_tun_mode()
        self.cgroups = (cgroup_manager or cg.detect()) if self.bwrap else cg.NoCgroups()

    # ------------------------------------------------------------------ report
    @property
    def mode(self) -> Mode:
        if not self.bwrap:
            return Mode(
                "none", "none", "host", "none", "bubblewrap is not installed or sandbox = 'none'"
            )
        net = "pasta" if self.pasta and _tun_usable() else "host"
        if self.root and self.setpriv:
            name, why = "root", "a root hub: each user's sessions run under their own host uid"
        else:
            name = "unprivileged"
            why = (
                f"an unprivileged hub (uid {os.geteuid()}): every session runs under the hub's "
                "own uid in unprivileged user namespaces, so users are kept from each other "
                "only by the namespaces (one account per person is not possible)"
            )
        return Mode(name, "bubblewrap", net, self.cgroups.version, why)

    def describe(self) -> dict[str, Any]:
        m = self.mode
        return {
            "isolation": m.name,
            "sandbox": m.sandbox,
            "network": m.network,
            "cgroups": m.cgroups,
            "seccomp": m.sandbox == "bubblewrap",
            "isolation_reason": m.reason,
        }

    def identity_for_hub(self) -> Identity:
        return Identity(os.getuid(), os.getgid())

    # ------------------------------------------------------------------ command line
    def command(self, spec: SandboxSpec, fds: dict[str, int]) -> list[str]:
        """The argv for ``spec``; ``fds`` holds the seccomp program and the account files."""
        assert self.bwrap
        uid, gid = spec.identity.uid, spec.identity.gid
        out: list[str] = []
        if self.root:
            if uid == 0 or gid == 0:
                raise ValueError("a sandbox never runs as root")
            out += [
                self.setpriv or "setpriv", f"--reuid={uid}", f"--regid={gid}",
                "--clear-groups", "--inh-caps=-all",
            ]  # fmt: skip
        if self.mode.network == "pasta":
            net = spec.network
            out += [self.pasta or "pasta", "-q", "--no-map-gw", "-u", "none", "-U", "none"]
            if not self.ipv6:
                out.append("-4")
            # One -t per port, bound to loopback: a bare port would listen on every
            # address of the host, i.e. on the network.
            for port in net.from_host:
                out += ["-t", f"127.0.0.1/{port}"]
            if not net.from_host:
                out += ["-t", "none"]
            out += ["-T", ",".join(map(str, net.to_host)) or "none"]
            if net.outbound:
                out.append("--config-net")  # a route out; without it only lo exists
            out += ["--", "/bin/sh", "-c", QUICKACK, "sh"]
        out += [
            self.bwrap,
            "--unshare-user", "--uid", str(uid), "--gid", str(gid), "--disable-userns",
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "rsparkhub", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL",
            "--seccomp", str(fds["seccomp"]),
            "--ro-bind", "/usr", "/usr",
        ]  # fmt: skip
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            p = Path("/") / top
            if p.is_symlink():
                out += ["--symlink", os.readlink(p), str(p)]
            elif p.is_dir():
                out += ["--ro-bind", str(p), str(p)]
        for name in ETC:
            out += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        out += ["--ro-bind-data", str(fds["passwd"]), "/etc/passwd"]
        out += ["--ro-bind-data", str(fds["group"]), "/etc/group"]
        size = str(spec.limits.tmp_mb * 1024 * 1024)
        out += ["--proc", "/proc", "--dev", "/dev"]
        out += ["--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", "/dev/shm"]
        out += ["--dir", "/run", "--dir", "/var", "--symlink", "../tmp", "/var/tmp"]
        # Debian's rmarkdown asks dpkg-query where jQuery is: the package list, read-only.
        out += ["--ro-bind-try", "/var/lib/dpkg", "/var/lib/dpkg"]
        for m in spec.masked:
            out += ["--perms", "0755", "--tmpfs", m]
        shared = {src for src, _ in self.runtime_binds()}
        for src, dest in spec.ro_binds:
            own = None if src in shared else self._n(spec.name)
            out += ["--ro-bind", str(self._reachable(src, own)), dest]
        for src, dest in spec.binds:
            out += ["--bind", str(self._reachable(src, self._n(spec.name), False)), dest]
        for dest in spec.late_dirs:
            out += ["--bind", str(self._late_dir(self._n(spec.name), dest)), dest]
        oom_dir = self.cgroups.events_dir(self._n(spec.name))
        if oom_dir is not None:
            out += ["--ro-bind-try", str(oom_dir), OOM_DIR]
        # The root itself (a tmpfs holding the mount points) is read-only: only /tmp,
        # /dev/shm and the binds are writable.
        for m in spec.masked:
            out += ["--remount-ro", m]
        out += ["--remount-ro", "/", "--chdir", spec.chdir, "--", *spec.argv]
        return out

    def runtime_binds(self) -> list[tuple[Path, str]]:
        """Python and this package, read-only, wherever they live (a venv, pyenv under
        /root, a checkout): only their own directories, never their parents."""
        import rsparkhub

        paths = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
        paths.add(Path(rsparkhub.__file__).resolve().parent.parent)
        paths = {p for p in paths if not any(str(p).startswith(f"/{t}/") for t in ("usr",))}
        # Drop paths inside another one (a venv inside the checkout, say).
        keep = sorted(p for p in paths if not any(q != p and q in p.parents for q in paths))
        return [(p, str(p)) for p in keep]

    # ------------------------------------------------------------------ paths
    def _reachable(self, path: Path, name: str | None = None, read_only: bool = True) -> Path:
        """``path``, or a view of it under /run/rsparkhub when the sandbox's uid cannot
        reach it by path (bubblewrap resolves bind sources as that uid): Python from pyenv
        under /root, a data directory under a private parent. A root hub makes that view
        with a host bind mount: shared for the runtime directories (``name`` None), per
        sandbox for anything else (removed by ``kill``)."""
        if not self.root or _searchable_by_others(path):
            return path
        key = hashlib.sha256(str(path).encode()).hexdigest()[:16]
        dest = (STAGE / "ro" / key) if name is None else (STAGE / "rw" / name / key)
        STAGE.mkdir(parents=True, exist_ok=True)
        # Sessions start concurrently, in threads and in other hubs: one stager at a time.
        lock = os.open(STAGE.parent / ".stage.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._stage(path, dest, read_only=read_only)
        finally:
            os.close(lock)
        return dest

    @staticmethod
    def _stage(path: Path, dest: Path, read_only: bool) -> None:
        if not is_mount(dest):
            dest.mkdir(parents=True, exist_ok=True)
            for d in (STAGE.parent, STAGE, dest.parent.parent, dest.parent):
                if d.is_relative_to(STAGE.parent):
                    d.chmod(0o711)  # searchable, not listable
            bind(path, dest, read_only=read_only)

    # ------------------------------------------------------------------ late binds
    @staticmethod
    def _late_dir(full_name: str, dest: str) -> Path:
        return STAGE / "late" / full_name / hashlib.sha256(dest.encode()).hexdigest()[:16]

    def _make_late_dirs(self, spec: SandboxSpec) -> None:
        """Each late directory: an empty host directory, a shared mount of itself, so a
        mount made under it later propagates into the sandbox's copy (a slave of it)."""
        if spec.late_dirs and not self.root:
            raise ValueError("binds after the start need a root hub")
        for dest in spec.late_dirs:
            host = self._late_dir(self._n(spec.name), dest)
            host.mkdir(parents=True, exist_ok=True)
            for d in (STAGE.parent, STAGE, *reversed(host.parents[:3])):
                if d.is_relative_to(STAGE.parent):
                    d.chmod(0o711)
            host.chmod(0o755)
            if not is_mount(host):
                bind(host, host)
                make_shared(host)

    def late_bind(
        self, name: str, src: Path, dest: str, identity: Identity, read_only: bool = False
    ) -> None:
        """Bind ``src`` at ``dest`` inside the running sandbox ``name``, as a start-time bind
        would: read-write ones handed to ``identity``, read-only ones read-only in the
        sandbox too. ``dest`` is a direct child of one of its ``late_dirs``. Blocking."""
        parent, _, leaf = dest.rstrip("/").rpartition("/")
        host = self._late_dir(self._n(name), parent)
        if not leaf or leaf in (".", "..") or not is_mount(host):
            raise ValueError(f"{dest} is not under a late directory of sandbox {name}")
        target = host / leaf
        target.mkdir(exist_ok=True)
        if is_mount(target):
            return
        if read_only:
            bind_read_only_whole(src, target)
        else:
            _own(src, identity)
            bind(src, target)

    def _unlate(self, full_name: str) -> None:
        base = STAGE / "late" / full_name
        if not base.is_dir():
            return
        for d in base.iterdir():
            umount(d)  # detaches what was bound under it too
            for sub in d.iterdir() if d.is_dir() else ():
                with contextlib.suppress(OSError):
                    sub.rmdir()  # empty mount points only: never a tree's contents
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            base.rmdir()

    def _unstage(self, name: str) -> None:
        base = STAGE / "rw" / name
        if not base.is_dir():
            return
        for d in base.iterdir():
            umount(d)
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            base.rmdir()

    # ------------------------------------------------------------------ start
    def _prepare(self, spec: SandboxSpec, fds: dict[str, int]) -> list[str]:
        self.cgroups.create(self._n(spec.name), spec.limits)
        self._make_late_dirs(spec)
        for src, _dest in spec.binds:
            _own(src, spec.identity)
        return self.command(spec, fds)

    async def spawn(self, spec: SandboxSpec) -> Child:
        """Start ``spec.argv`` in its sandbox (and cgroup); the caller owns the process."""
        if self.bwrap is None:
            return await self._spawn_plain(spec)
        name = self._n(spec.name)
        entry = self.cgroups.entry_files(name)
        fds: dict[str, int] = {}
        try:
            fds["seccomp"] = seccomp.program_fd()
            fds["passwd"], fds["group"] = _account_files(spec.identity)
            # File-system work (cgroupfs, chown, staging mounts) off the event loop.
            argv = await asyncio.to_thread(self._prepare, spec, fds)
            use_rlimits = self.cgroups.version == "none"
            # Still the hub's uid: into the cgroup, under the rlimits, then the sandbox.
            argv = cg.entering(entry) + _rlimits(spec.limits, use_rlimits) + argv
            return await child.start(
                argv,
                env=spec.env,
                cwd="/",
                stdout=spec.stdout,
                stdin_pipe=spec.stdin_pipe,
                pass_fds=(*fds.values(), *spec.pass_fds),
            )
        except BaseException:
            self.kill(spec.name)
            raise
        finally:
            for fd in fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)

    async def _spawn_plain(self, spec: SandboxSpec) -> Child:
        """sandbox = 'none' (or bubblewrap missing): the command as a plain child, with
        rlimits. Isolates nothing; ``doctor`` says so."""
        return await child.start(
            [*_rlimits(spec.limits), *spec.argv],
            env=spec.env,
            cwd=spec.chdir,
            stdout=spec.stdout,
            stdin_pipe=spec.stdin_pipe,
            pass_fds=spec.pass_fds,
        )

    # ------------------------------------------------------------------ control
    def _n(self, name: str) -> str:
        return f"{self.scope}.{name}" if self.scope else name

    def names(self) -> list[str]:
        """The sandboxes of this hub that have a cgroup now."""
        pre = f"{self.scope}." if self.scope else ""
        return [n[len(pre) :] for n in self.cgroups.names() if n.startswith(pre)]

    def pids(self, name: str) -> list[int]:
        return self.cgroups.pids(self._n(name))

    def kill(self, name: str) -> None:
        """SIGKILL every process of the sandbox and remove its cgroup."""
        full = self._n(name)
        self.cgroups.kill(full)
        self.cgroups.remove(full)
        self._unstage(full)
        self._unlate(full)

    def memory(self, name: str) -> int | None:
        """Resident memory of every process of the sandbox (bytes), if it has a cgroup."""
        pids = self.cgroups.pids(self._n(name))
        if not pids:
            return None
        import psutil

        total = 0
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(pid).memory_info().rss
        return total

    def oom_kills(self, name: str) -> int | None:
        return self.cgroups.oom_kills(self._n(name))


def sandboxes_for(settings: Settings, enabled: bool | None = None) -> Sandboxes:
    """This hub's sandboxes as its settings ask (``enabled`` overrides ``sandbox``)."""
    return Sandboxes(
        enabled=settings.sandbox != "none" if enabled is None else enabled,
        scope=scope_for(settings.data_dir),
        ipv6=settings.session_ipv6,
    )


def scope_for(data_dir: Path) -> str:
    """A short name for one hub (its data directory) on this machine."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]


def _searchable_by_others(path: Path) -> bool:
    p = path.resolve()
    for d in [*reversed(p.parents), p]:
        try:
            if not d.stat().st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def _rlimits(limits: Limits, memory_and_pids: bool = True) -> list[str]:
    """The ``prlimit`` prefix for per-process limits: CPU time always; memory and
    processes where no cgroup can be made (a fallback: RLIMIT_AS counts address space,
    RLIMIT_NPROC the whole uid). Empty when there is nothing to set.

    A command prefix, not a ``preexec_fn``: Python code between fork and exec makes the
    hub fork (not vfork) and copy-fault its heap, ~10 ms per spawn here."""
    opts = []
    if limits.cpu_seconds:
        opts.append(f"--cpu={limits.cpu_seconds}")
    if memory_and_pids and limits.memory_mb:
        opts.append(f"--as={limits.memory_mb * 1024 * 1024}")
    if memory_and_pids and limits.pids:
        opts.append(f"--nproc={limits.pids}")
    return [shutil.which("prlimit") or "prlimit", *opts, "--"] if opts else []


def _own(path: Path, ident: Identity) -> None:
    """Hand a directory the hub made over to the sandbox's uid (a root hub only)."""
    if os.geteuid() != 0:
        return
    st = os.stat(path)
    if (st.st_uid, st.st_gid) == (ident.uid, ident.gid):
        return  # already handed over (a user's persistent directory)
    for root, dirs, files in os.walk(path):
        for n in (*dirs, *files):
            with contextlib.suppress(OSError):
                os.lchown(os.path.join(root, n), ident.uid, ident.gid)
    os.chown(path, ident.uid, ident.gid)
    os.chmod(path, 0o700)


def _account_files(ident: Identity) -> tuple[int, int]:
    """/etc/passwd and /etc/group inside: root, the user and nobody — no host accounts."""
    passwd = (
        "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
        f"rsparkhub:x:{ident.uid}:{ident.gid}:session user:/tmp:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    group = f"root:x:0:\nrsparkhub:x:{ident.gid}:\nnogroup:x:65534:\n"
    return _data_fd("passwd", passwd), _data_fd("group", group)


def _data_fd(name: str, text: str) -> int:
    fd = os.memfd_create(f"rsparkhub-{name}", 0)
    os.write(fd, text.encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
