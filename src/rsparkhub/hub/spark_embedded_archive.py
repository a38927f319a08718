"""The class-data archive (AppCDS) of the embedded Spark servers (``spark = 'embedded'``).

A server's start is mostly the JVM loading classes. Once per Java and pyspark install the
hub makes an archive of the classes a server loads — a training server with no user and no
port, under ``nobody`` (a root hub) or the hub's own account, run with
``-XX:ArchiveClassesAtExit`` — and keeps it in ``spark_class_archive_dir``; every server
then maps it read-only (``-XX:SharedArchiveFile``). Servers start without it until it
exists.

HotSpot archives no class of a signed jar, and Spark's code generator (Janino, in two
signed jars) is loaded by the first statement of every server: its ~370 classes were read,
digested and verified there each time. The hub therefore makes unsigned copies of Spark's
signed jars next to the archive (``spark-<key>.jars/``, made once, read-only to all) and
both the training server and every server put them before Spark's own jars; a JVM maps an
archive only on the class path it was made with.

Owns: where the archive is, making it (and the unsigned copies), adopting the training
server's file (a regular file, copied, read-only to all), and removing the archives of
earlier installs once a new one is made. Must not: make it while a user's
server starts (the service asks for it once a server is up).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
import sys
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from rsparkhub.config import Settings
from rsparkhub.hub.sandbox import Identity, Limits, Network, SandboxSpec
from rsparkhub.hub.spark import SparkUnavailable
from rsparkhub.hub.spark_embedded_process import (
    Archive,
    SpawnTask,
    UserServer,
    java_version,
    launch,
    pyspark_version,
    server_argv,
    server_confs,
    server_env,
    spark_home,
    start_config,
)
from rsparkhub.hub.supervised import free_port

if TYPE_CHECKING:
    from rsparkhub.hub.sandbox import Sandboxes

log = logging.getLogger("rsparkhub.spark")

TRAIN_TIMEOUT_S = 600.0
# What the archive's key carries besides the installs: a change of how servers load classes
# (here: unsigned copies first on the class path) makes a new archive.
# (/2: the training server runs the UI's JWSFilter too, so its classes are archived)
CLASS_LAYOUT = "unsigned-copies-first/2"
SIGNATURE = re.compile(r"META-INF/[^/]+\.(SF|DSA|RSA|EC)$|META-INF/SIG-[^/]+$", re.IGNORECASE)


class ClassArchive:
    """The archive of this Java and pyspark in ``directory``: :attr:`path` once it exists."""

    def __init__(self, settings: Settings, directory: Path) -> None:
        self.settings = settings
        self.directory = directory
        self.path: Path | None = None  # the archive, once it exists
        self.class_path: tuple[Path, ...] = ()  # its unsigned copies, once it exists
        self._target: Path | None = None  # where it is (or will be)

    def binds(self) -> list[tuple[Path, str]]:
        """What a server's sandbox shows read-only to map the archive (and its copies)."""
        if self.path is None:
            return []
        return [(self.path.parent, str(self.path.parent))]

    async def key(self) -> str:
        """What the archive's file name carries: a new Java, pyspark or Python makes a new
        archive, and so do Spark's jars installed again (the same version and path): the
        JVM checks each class path jar's size and time against the archive's and silently
        maps nothing on a mismatch."""
        java = await java_version() or "?"
        home = spark_home()
        jars = await asyncio.to_thread(_jars_fingerprint, home / "jars")
        text = "\n".join(
            [java, pyspark_version(home), str(home.resolve()), sys.version, CLASS_LAYOUT, jars]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    async def find(self) -> Archive | None:
        """The archive of this Java and pyspark, if it was made already."""
        if self.path is None and self._target is None:
            try:
                key = await self.key()
            except (SparkUnavailable, OSError):
                return None
            self._target = self.directory / f"spark-{key}.jsa"
        if self.path is None and self._target is not None:
            target = self._target
            copies = await asyncio.to_thread(_listed_copies, _copies_dir(target))
            if copies is not None and await asyncio.to_thread(target.is_file):
                self.path, self.class_path = target, copies
        return Archive(self.path, self.class_path) if self.path is not None else None

    async def make(self, sandboxes: Sandboxes, spawn_task: SpawnTask) -> None:
        """Make the archive (once per Java and pyspark install). Never raises but for
        cancellation: servers start without it."""
        try:
            if await self.find() is not None or self._target is None:
                return  # made already, or no Java/pyspark to make it for
            target = self._target
            t0 = time.monotonic()
            copies = await self._train(sandboxes, spawn_task, target)
            log.info("spark: made the class-data archive %s in %.0f s", target,
                     time.monotonic() - t0)  # fmt: skip
            self.path, self.class_path = target, copies
            removed = await asyncio.to_thread(prune_other_archives, self.directory, target)
            if removed:
                log.info("spark: removed the class-data archives of earlier installs: %s",
                         ", ".join(removed))  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - servers start without it
            log.warning("spark: no class-data archive (servers start slower): %s", exc)

    def state(self) -> str:
        """For doctor (blocking: call it from a thread)."""
        if self.path is not None:
            return str(self.path)
        d = self.directory
        found = sorted(d.glob("spark-*.jsa")) if d.is_dir() else []
        return str(found[-1]) if found else "not made yet (made at the first server start)"

    def _identity(self, sandboxes: Sandboxes) -> Identity:
        """An account of no user's: ``nobody`` for a root hub, else the hub's own."""
        if os.geteuid() == 0:
            return Identity(65534, 65534)
        return sandboxes.identity_for_hub()

    async def _train(
        self, sandboxes: Sandboxes, spawn_task: SpawnTask, target: Path
    ) -> tuple[Path, ...]:
        """A server with no user and no forwarded port, run once with
        ``-XX:ArchiveClassesAtExit`` on the unsigned copies' class path (returned); its
        archive is then the hub's (read-only to all)."""
        home = spark_home()
        work = self.directory / f"train-{secrets.token_hex(6)}"
        await asyncio.to_thread(_make_private_dir, work)
        copies_dir = _copies_dir(target)
        copies = await asyncio.to_thread(unsigned_copies, home / "jars", copies_dir)
        data = work / "data"
        await asyncio.to_thread(data.mkdir, 0o700)
        name = f"spark-train-{work.name[6:]}"
        # a UI key of its own (never used): the UI filter's classes, which every server
        # loads at start, go into the archive too
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        srv = UserServer(user_id="train", user="rsparkhub", port=free_port(), ui_key=key)
        out_path = data / "classes.jsa"
        spec = SandboxSpec(
            name=name,
            identity=self._identity(sandboxes),
            argv=server_argv(data, "--train", str(out_path)),
            env=server_env(home, data, srv.user),
            chdir=str(data),
            binds=[(data, str(data))],
            ro_binds=[*sandboxes.runtime_binds(), (copies_dir, str(copies_dir))],
            masked=[str(self.settings.data_dir.resolve())],
            network=Network(outbound=False),
            limits=Limits(
                memory_mb=self.settings.spark_memory_mb,
                pids=2048,
                cpu_weight=20,
                tmp_mb=self.settings.session_tmp_mb,
            ),  # fmt: skip
        )
        confs = server_confs(self.settings, srv, data, free_port(), None, class_path=copies)
        try:
            launched = await launch(
                sandboxes,
                spec,
                srv,
                self.directory / "train.log",
                start_config(srv, confs, data, first=True),
                spawn_task,
            )
            rc = await asyncio.wait_for(launched.proc.wait(), TRAIN_TIMEOUT_S)
            await asyncio.wait_for(launched.reader, 10)
            if rc != 0:
                raise SparkUnavailable(f"the training server exited with {rc}; see "
                                       f"{self.directory / 'train.log'}")  # fmt: skip
            await asyncio.to_thread(_adopt_archive, out_path, target)
        finally:
            await asyncio.to_thread(sandboxes.kill, name)
            await asyncio.to_thread(shutil.rmtree, work, True)
        return copies


def _jars_fingerprint(jars: Path) -> str:
    """Each jar's name, size and modification time (what the JVM validates), hashed."""
    h = hashlib.sha256()
    for jar in sorted(jars.glob("*.jar")):
        st = jar.stat()
        h.update(f"{jar.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# ------------------------------------------------------------------ unsigned copies
def _copies_dir(archive: Path) -> Path:
    return archive.with_suffix(".jars")


def _listed_copies(directory: Path) -> tuple[Path, ...] | None:
    """The copies in ``directory`` (sorted), or None when it was not made."""
    if not directory.is_dir():
        return None
    return tuple(sorted(directory.glob("*.jar")))


def is_signed(jar: Path) -> bool:
    """Whether a jar carries a signature (``META-INF/*.SF``, ``*.RSA`` …)."""
    with zipfile.ZipFile(jar) as z:
        return any(SIGNATURE.match(name) for name in z.namelist())


def unsigned_copy(src: Path, dest: Path) -> None:
    """``src`` without its signature files: every other entry as it is (bytes, order,
    compression, times). A jar without them is an unsigned jar to the JVM; the manifest's
    per-entry digests are then unused."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "x") as zout:
        for info in zin.infolist():
            if not SIGNATURE.match(info.filename):
                zout.writestr(info, zin.read(info))


def unsigned_copies(jars: Path, directory: Path) -> tuple[Path, ...]:
    """Unsigned copies of the signed jars in ``jars``, in ``directory`` (read-only to all):
    the ones there when it exists — an archive made on them names their sizes and times,
    so they are never remade while it may be in use — else made anew (in a private
    directory renamed into place: of two hubs making them at once, one's are kept)."""
    found = _listed_copies(directory)
    if found is not None:
        return found
    tmp = directory.with_name(f"{directory.name}.tmp-{secrets.token_hex(4)}")
    tmp.mkdir(mode=0o700)
    try:
        for jar in sorted(jars.glob("*.jar")):
            if is_signed(jar):
                unsigned_copy(jar, tmp / jar.name)
                (tmp / jar.name).chmod(0o444)
        tmp.chmod(0o755)
        try:
            tmp.rename(directory)
        except OSError:  # another hub's are in place
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    made = _listed_copies(directory)
    if made is None:
        raise SparkUnavailable(f"could not make {directory}")
    return made


def prune_other_archives(directory: Path, keep: Path) -> list[str]:
    """Remove the archives (and their unsigned copies) in ``directory`` other than
    ``keep``: they belong to earlier Java, pyspark or jar installs, ~250 MB each. A JVM
    that maps one keeps its pages; a hub that still wanted one starts servers without it
    and makes its own again. The names removed."""
    removed = []
    for path in sorted(directory.glob("spark-*.jsa")):
        if path != keep and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    for path in sorted(directory.glob("spark-*.jars")):
        if path != _copies_dir(keep) and path.is_dir() and not path.is_symlink():
            path.chmod(0o700)  # read-only to all: its files could not be unlinked
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=False)
    path.parent.chmod(0o755)  # the archive directory: searchable (its archive is read-only)


def _adopt_archive(made: Path, dest: Path) -> None:
    """The training server's archive becomes the hub's: a regular file (never a link),
    copied, read-only for everyone, renamed into place."""
    st = os.lstat(made)
    if not stat.S_ISREG(st.st_mode) or st.st_size < 1 << 20:
        raise SparkUnavailable("the training server wrote no class-data archive")
    tmp = dest.with_suffix(f".tmp-{secrets.token_hex(4)}")
    fd = os.open(made, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    tmp.chmod(0o444)
    os.replace(tmp, dest)
