"""Workspace files over HTTP: list, read (raw or as text), save with version check, upload
several, move/copy, delete, history and restore."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, UploadFile
from pydantic import BaseModel, Field

from rsparkhub.hub.api.deps import CallerDep, DbDep, HubDep, ReadableWorkspace, WritableWorkspace
from rsparkhub.hub.api.headers import attachment
from rsparkhub.hub.db.engine import iso
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.files import (
    file_info,
    get_file,
    history,
    list_files,
    version_row,
)
from rsparkhub.hub.paths import clean_path
from rsparkhub.hub.quotas import mb, workspace_size

router = APIRouter(tags=["files"])


@router.get("/api/workspaces/{workspace_id}/files", summary="List the workspace's files")
async def list_workspace_files(w: ReadableWorkspace, db: DbDep) -> list[dict[str, object]]:
    return [file_info(f) for f in await list_files(db, w.id)]


async def _content(
    hub: HubDep, db: DbDep, workspace_id: str, path: str, version: int | None
) -> tuple[bytes, int, str]:
    f = await get_file(db, workspace_id, clean_path(path))
    if version is None or version == f.version:
        return await hub.blobs.get(f.sha256), f.version, f.path
    row = await version_row(db, f, version)
    return await hub.blobs.get(row.sha256), row.version, f.path


@router.get(
    "/api/workspaces/{workspace_id}/files/{path:path}",
    summary="Download a file (optionally an old version)",
)
async def download_file(
    w: ReadableWorkspace,
    path: str,
    hub: HubDep,
    db: DbDep,
    version: int | None = None,
    download: bool = False,
) -> Response:
    data, v, clean = await _content(hub, db, w.id, path, version)
    headers = {
        "X-File-Version": str(v),
        "ETag": f'"{v}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Cache-Control": "no-cache",
    }
    if download:
        headers["Content-Disposition"] = attachment(clean.rsplit("/", 1)[-1])
    return Response(data, media_type="application/octet-stream", headers=headers)


# Inline display (the IDE's Viewer pane): the real type, but a document written by anyone
# with access runs in an opaque origin (CSP sandbox without allow-same-origin), so its
# scripts cannot call the API with the viewer's cookie. PDFs get no sandbox (browsers do
# not show PDFs in sandboxed documents) but may not run scripts or load anything.
_INLINE_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".pdf": "application/pdf",
    ".txt": "text/plain; charset=utf-8",
    ".csv": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".json": "text/plain; charset=utf-8",
}
SANDBOX_CSP = (
    "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox; frame-ancestors 'self'"
)
PDF_CSP = "default-src 'none'; script-src 'none'; object-src 'self'; frame-ancestors 'self'"


@router.get(
    "/api/workspaces/{workspace_id}/raw/{path:path}",
    summary="A file for display (its own type; HTML sandboxed in an opaque origin)",
)
async def raw_file(
    w: ReadableWorkspace,
    path: str,
    hub: HubDep,
    db: DbDep,
    version: int | None = None,
) -> Response:
    data, v, clean = await _content(hub, db, w.id, path, version)
    suffix = "." + clean.rsplit(".", 1)[-1].lower() if "." in clean else ""
    media = _INLINE_TYPES.get(suffix, "application/octet-stream")
    headers = {
        "ETag": f'"{v}"',
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": PDF_CSP if suffix == ".pdf" else SANDBOX_CSP,
        "X-Frame-Options": "SAMEORIGIN",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    return Response(data, media_type=media, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "file_too_large", f"Files are limited to {mb(limit)}.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "file_too_large", f"Files are limited to {mb(limit)}.")
    return bytes(body)


@router.put(
    "/api/workspaces/{workspace_id}/files/{path:path}",
    summary="Save a file (raw body); base_version = the version you edited, 0 for a new file",
)
async def put_file(
    w: WritableWorkspace,
    path: str,
    request: Request,
    caller: CallerDep,
    hub: HubDep,
    db: DbDep,
    base_version: int | None = None,
) -> dict[str, object]:
    data = await _read_body(request, hub.settings.max_file_bytes)
    saved = await hub.files.save(db, w.id, path, data, caller.name, base_version)
    return file_info(saved.file)


@router.get("/api/workspaces/{workspace_id}/text/{path:path}", summary="Open a file as UTF-8 text")
async def get_text(
    w: ReadableWorkspace,
    path: str,
    hub: HubDep,
    db: DbDep,
    version: int | None = None,
) -> dict[str, object]:
    data, v, clean = await _content(hub, db, w.id, path, version)
    if b"\x00" in data[:8192]:
        raise ApiError(
            415,
            "binary_file",
            f"'{clean}' is a binary file; download it instead of opening it as text.",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(
            415, "binary_file", f"'{clean}' is not UTF-8 text; download it instead."
        ) from None
    return {"path": clean, "version": v, "content": text}


class TextBody(BaseModel):
    content: str
    base_version: int | None = Field(default=None, ge=0)


@router.put(
    "/api/workspaces/{workspace_id}/text/{path:path}",
    summary="Save text; base_version = the version you edited, 0 for a new file",
)
async def put_text(
    w: WritableWorkspace, path: str, body: TextBody, caller: CallerDep, hub: HubDep, db: DbDep
) -> dict[str, object]:
    saved = await hub.files.save(
        db, w.id, path, body.content.encode(), caller.name, body.base_version
    )
    return file_info(saved.file)


@router.get(
    "/api/workspaces/{workspace_id}/limits",
    summary="The size limits a save or upload must respect, and the space used",
)
async def limits(w: ReadableWorkspace, hub: HubDep, db: DbDep) -> dict[str, int]:
    s = hub.settings
    return {
        "max_file_bytes": s.max_file_bytes,
        "max_upload_bytes": s.max_upload_bytes,
        "max_workspace_bytes": s.max_workspace_bytes,
        "used_bytes": await workspace_size(db, w.id),
    }


class NewFileBody(BaseModel):
    path: str = Field(max_length=4096)
    content: str = ""


@router.post(
    "/api/workspaces/{workspace_id}/new",
    status_code=201,
    summary="Create a file that must not exist yet (the path travels in the body, so a name "
    "such as '../x' meets the path rules instead of being resolved away by the URL)",
)
async def new_file(
    w: WritableWorkspace, body: NewFileBody, caller: CallerDep, hub: HubDep, db: DbDep
) -> dict[str, object]:
    saved = await hub.files.save(db, w.id, body.path, body.content.encode(), caller.name, 0)
    return file_info(saved.file)


@router.post(
    "/api/workspaces/{workspace_id}/upload",
    summary="Upload several files (multipart 'files'); existing files get a new version",
)
async def upload(
    w: WritableWorkspace,
    files: list[UploadFile],
    caller: CallerDep,
    hub: HubDep,
    db: DbDep,
    folder: str = "",
) -> list[dict[str, object]]:
    prefix = clean_path(folder.rstrip("/")) + "/" if folder.strip("/") else ""
    out = []
    for up in files:
        data = await up.read(hub.settings.max_file_bytes + 1)
        name = prefix + (up.filename or "")
        if len(data) > hub.settings.max_file_bytes:
            raise ApiError(
                413,
                "file_too_large",
                f"'{up.filename}' is larger than the limit of {mb(hub.settings.max_file_bytes)}.",
            )
        saved = await hub.files.save(db, w.id, name, data, caller.name, None, require_base=False)
        out.append(file_info(saved.file))
    return out


@router.delete("/api/workspaces/{workspace_id}/files/{path:path}", summary="Delete a file")
async def remove_file(w: WritableWorkspace, path: str, hub: HubDep, db: DbDep) -> dict[str, bool]:
    await hub.files.delete(db, w.id, path)
    return {"ok": True}


class MoveBody(BaseModel):
    source: str = Field(min_length=1, max_length=1024, alias="from")
    target: str = Field(min_length=1, max_length=1024, alias="to")
    copy_: bool = Field(default=False, alias="copy")


@router.post(
    "/api/workspaces/{workspace_id}/move",
    summary="Rename/move a file, or duplicate it with copy=true",
)
async def move(
    w: WritableWorkspace, body: MoveBody, caller: CallerDep, hub: HubDep, db: DbDep
) -> dict[str, object]:
    f = await hub.files.move(db, w.id, body.source, body.target, caller.name, copy=body.copy_)
    return file_info(f)


@router.get(
    "/api/workspaces/{workspace_id}/history/{path:path}",
    summary="The versions of a file, newest first",
)
async def file_history(w: ReadableWorkspace, path: str, db: DbDep) -> list[dict[str, object]]:
    f = await get_file(db, w.id, clean_path(path))
    return [
        {
            "version": v.version,
            "size": v.size,
            "sha256": v.sha256,
            "author": v.author,
            "created_at": iso(v.created_at),
        }
        for v in await history(db, f)
    ]


class RestoreBody(BaseModel):
    version: int = Field(ge=1)


@router.post(
    "/api/workspaces/{workspace_id}/restore/{path:path}",
    summary="Make an old version the newest one",
)
async def restore(
    w: WritableWorkspace, path: str, body: RestoreBody, caller: CallerDep, hub: HubDep, db: DbDep
) -> dict[str, object]:
    f = await get_file(db, w.id, clean_path(path))
    row = await version_row(db, f, body.version)
    data = await hub.blobs.get(row.sha256)
    saved = await hub.files.save(db, w.id, f.path, data, caller.name, f.version)
    return file_info(saved.file)
