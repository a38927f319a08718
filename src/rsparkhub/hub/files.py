"""Workspace files: the hub is their source of truth. Each save writes the bytes to the
blob store and a new ``file_versions`` row; a save names the version it edited, and a stale
save is refused with 409 and the current version. Sessions and clients are told about
every change through a ``FileListener`` (the sessions' fan-out to agents and clients), named
with the change's ``Origin``: a save by a client goes to the session, a file written by the
session's own code does not go back to it."""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rsparkhub.config import Settings
from rsparkhub.filetypes import Language, is_source, language_for_path
from rsparkhub.hub.blobs import BlobStore
from rsparkhub.hub.db.engine import iso
from rsparkhub.hub.db.models import File, FileVersion
from rsparkhub.hub.errors import ApiError, not_found
from rsparkhub.hub.paths import clean_path
from rsparkhub.hub.quotas import check_room, mb

# How many of a workspace's latest files latest_language looks at for one with a language.
LATEST_LANGUAGE_SCAN = 200

# Who changed a file: a client (the browser, the API) or code running in the session.
Origin = Literal["client", "session"]


class FileListener(Protocol):
    """Told about every committed change (the session manager's fan-out, wrapped by the
    shared documents). ``overwrote``: the sha256 of the content the writer replaced, when
    it says (code in the session names what it had on disk)."""

    async def file_saved(
        self, workspace_id: str, f: File, data: bytes, origin: Origin, *, overwrote: str | None
    ) -> None: ...

    async def file_deleted(self, workspace_id: str, path: str, origin: Origin) -> None: ...


def file_kind(path: str) -> str:
    return "source" if is_source(path) else "other"


def file_info(f: File) -> dict[str, object]:
    return {
        "path": f.path,
        "version": f.version,
        "size": f.size,
        "sha256": f.sha256,
        "kind": file_kind(f.path),
        "updated_at": iso(f.updated_at),
    }


@dataclass
class Saved:
    file: File
    changed: bool


async def get_file(db: AsyncSession, workspace_id: str, path: str) -> File:
    f = (
        await db.execute(select(File).where(File.workspace_id == workspace_id, File.path == path))
    ).scalar_one_or_none()
    if f is None:
        raise not_found(f"The file '{path}'")
    return f


async def list_files(db: AsyncSession, workspace_id: str) -> list[File]:
    rows = await db.execute(
        select(File).where(File.workspace_id == workspace_id).order_by(File.path)
    )
    return list(rows.scalars())


async def latest_language(db: AsyncSession, workspace_id: str) -> Language | None:
    """The language of the workspace's most recently changed file that runs in a kernel (a
    script, or a document's chunks): the kernel its next session starts ahead."""
    rows = await db.execute(
        select(File.path)
        .where(File.workspace_id == workspace_id)
        .order_by(File.updated_at.desc())
        .limit(LATEST_LANGUAGE_SCAN)
    )
    return next((lang for p in rows.scalars() if (lang := language_for_path(p))), None)


class Files:
    """Saving, deleting and moving workspace files (the database rows and the blobs)."""

    def __init__(self, settings: Settings, blobs: BlobStore, listener: FileListener) -> None:
        self.settings = settings
        self.blobs = blobs
        self.listener = listener

    async def save(
        self,
        db: AsyncSession,
        workspace_id: str,
        raw_path: str,
        data: bytes,
        author: str,
        base_version: int | None,
        *,
        require_base: bool = True,
        origin: Origin = "client",
        overwrote: str | None = None,
    ) -> Saved:
        """Save ``data`` as the new version of a file.

        ``base_version`` is the version the writer edited (0 or None: the file must not exist
        yet). With ``require_base=False`` (files written by code in the session, uploads) the
        save always wins, as the session's disk is what the code produced; ``overwrote``
        then names the content the code replaced (its sha256), which an open shared document
        merges against.
        """
        path = clean_path(raw_path)
        limits = self.settings
        if len(data) > limits.max_file_bytes:
            raise ApiError(
                413,
                "file_too_large",
                f"'{path}' is {mb(len(data))}; files are limited to {mb(limits.max_file_bytes)}.",
            )
        existing = (
            await db.execute(
                select(File).where(File.workspace_id == workspace_id, File.path == path)
            )
        ).scalar_one_or_none()
        current_size = existing.size if existing else 0
        await check_room(db, limits, workspace_id, path, current_size, len(data))
        if require_base:
            if existing is not None and base_version in (None, 0):
                raise ApiError(
                    409,
                    "file_exists",
                    f"'{path}' already exists (version {existing.version}): open it, or pick "
                    "another name.",
                    current_version=existing.version,
                    current_sha256=existing.sha256,
                )
            if existing is None and base_version not in (None, 0):
                raise ApiError(
                    409, "version_conflict", f"'{path}' no longer exists.", current_version=0
                )
            if existing is not None and base_version != existing.version:
                raise ApiError(
                    409,
                    "version_conflict",
                    f"'{path}' was changed elsewhere (now version {existing.version}, you edited "
                    f"version {base_version}). Reload it or save under another name.",
                    current_version=existing.version,
                    current_sha256=existing.sha256,
                )
        sha = await self.blobs.put(data)
        if existing is not None and existing.sha256 == sha:
            return Saved(existing, False)
        now = datetime.now(UTC)
        if existing is None:
            existing = File(
                workspace_id=workspace_id,
                path=path,
                version=1,
                size=len(data),
                sha256=sha,
                updated_at=now,
            )
            db.add(existing)
            await db.flush()
        else:
            existing.version += 1
            existing.size = len(data)
            existing.sha256 = sha
            existing.updated_at = now
        db.add(
            FileVersion(
                file_id=existing.id,
                version=existing.version,
                sha256=sha,
                size=len(data),
                author=author,
            )
        )
        await db.commit()
        await self.listener.file_saved(workspace_id, existing, data, origin, overwrote=overwrote)
        return Saved(existing, True)

    async def delete(
        self, db: AsyncSession, workspace_id: str, path: str, *, origin: Origin = "client"
    ) -> None:
        f = await get_file(db, workspace_id, clean_path(path))
        await db.delete(f)
        await db.commit()
        await self.listener.file_deleted(workspace_id, f.path, origin)

    async def move(
        self,
        db: AsyncSession,
        workspace_id: str,
        src: str,
        dst: str,
        author: str,
        copy: bool = False,
    ) -> File:
        src, dst = clean_path(src), clean_path(dst)
        f = await get_file(db, workspace_id, src)
        clash = (
            await db.execute(
                select(File).where(File.workspace_id == workspace_id, File.path == dst)
            )
        ).scalar_one_or_none()
        if clash is not None:
            raise ApiError(
                409, "file_exists", f"'{dst}' already exists; delete it or pick another name."
            )
        data = await self.blobs.get(f.sha256)
        saved = await self.save(db, workspace_id, dst, data, author, None)
        if not copy:
            await self.delete(db, workspace_id, src)
        return saved.file

    async def zip(self, db: AsyncSession, workspace_id: str) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in await list_files(db, workspace_id):
                zf.writestr(f.path, await self.blobs.get(f.sha256))
        return buf.getvalue()


async def history(db: AsyncSession, f: File) -> list[FileVersion]:
    rows = await db.execute(
        select(FileVersion).where(FileVersion.file_id == f.id).order_by(FileVersion.version.desc())
    )
    return list(rows.scalars())


async def version_row(db: AsyncSession, f: File, version: int) -> FileVersion:
    row = (
        await db.execute(
            select(FileVersion).where(FileVersion.file_id == f.id, FileVersion.version == version)
        )
    ).scalar_one_or_none()
    if row is None:
        raise not_found(f"Version {version} of '{f.path}'")
    return row


def read_zip(data: bytes, max_total: int) -> list[tuple[str, bytes]]:
    """The files of an uploaded zip, with paths validated and zip bombs refused."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ApiError(400, "invalid_zip", "The upload is not a valid zip file.") from None
    out: list[tuple[str, bytes]] = []
    total = 0
    for info in zf.infolist():
        if info.is_dir() or info.filename.startswith("__MACOSX/"):
            continue
        total += info.file_size
        if total > max_total:
            raise ApiError(413, "workspace_full", f"The zip expands to more than {mb(max_total)}.")
        path = clean_path(info.filename)
        try:
            content = zf.read(info)
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
            # Corrupt data, a bad CRC, an encrypted entry or an unsupported compression.
            raise ApiError(
                400, "invalid_zip", f"'{info.filename}' in the zip cannot be read: {exc}"
            ) from None
        out.append((path, content))
    # A zip of one top folder (as most tools make them) is imported without that folder.
    tops = {p.split("/", 1)[0] for p, _ in out}
    if len(tops) == 1 and all("/" in p for p, _ in out):
        out = [(p.split("/", 1)[1], d) for p, d in out]
    return out
