"""Publishing: a rendered HTML document or a plot of a workspace at a stable URL
(``/api/pub/{id}``) for an audience — the workspace's members, every user of the hub, or anyone
with the link (a secret token in the URL). Owns the ``publications`` table.

A publication is a snapshot: its bytes are the blob of the file or plot at publish time, so
later edits do not leak out until someone republishes (same source, same URL, same link).
Changing the audience, or asking for a new link, draws a new token: the old link stops
working. The page names the file version and when it was rendered; the document itself is
served from ``/api/pub/{id}/content`` in an opaque-origin sandbox (CSP ``sandbox allow-scripts``
without ``allow-same-origin``), like the Viewer pane, so its scripts never call the API with
the visitor's cookie."""

from __future__ import annotations

import hmac
import secrets
from html import escape
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rsparkhub.hub.access import user_role
from rsparkhub.hub.api.deps import CallerDep, DbDep, HubDep, ReadableWorkspace, WritableWorkspace
from rsparkhub.hub.api.files import PDF_CSP, SANDBOX_CSP
from rsparkhub.hub.auth import Caller, authenticate
from rsparkhub.hub.db.engine import iso
from rsparkhub.hub.db.models import File, Plot, Publication, Workspace, utcnow
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.files import get_file
from rsparkhub.hub.paths import clean_path

router = APIRouter(tags=["publications"])

Audience = Literal["members", "hub", "link"]
_DOCUMENT_TYPES = {".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8"}
# the source a rendered document usually comes from, tried in this order
_ORIGINS = (".Rmd", ".rmd", ".qmd", ".ipynb", ".Rmarkdown", ".md", ".R", ".py")
_AUDIENCE_WORDS = {
    "members": "the workspace's members",
    "hub": "every user of this hub",
    "link": "anyone with the link",
}


def _gone() -> ApiError:
    return ApiError(
        404,
        "not_found",
        "This publication does not exist, was unpublished, or its link was changed; "
        "ask its author for the current link.",
    )


def publication_info(p: Publication, with_link: bool) -> dict[str, object]:
    """The API's view of a publication; ``url`` carries the link's token only for callers
    who may hand it out (the workspace's members)."""
    url = f"/api/pub/{p.id}"
    if p.audience == "link" and p.link_token:
        url = f"{url}?token={p.link_token}" if with_link else ""
    return {
        "id": p.id,
        "workspace_id": p.workspace_id,
        "kind": p.kind,
        "source": p.source,
        "title": p.title,
        "audience": p.audience,
        "url": url,
        "mime": p.mime,
        "size": p.size,
        "file_version": p.file_version,
        "origin_path": p.origin_path,
        "origin_version": p.origin_version,
        "rendered_at": iso(p.rendered_at),
        "published_at": iso(p.published_at),
        "published_by": p.published_by,
        "created_at": iso(p.created_at),
    }


class PublishBody(BaseModel):
    kind: Literal["document", "plot"]
    # the rendered file's path (document) or the plot's id (plot)
    source: str = Field(min_length=1, max_length=1024)
    audience: Audience = "members"


async def _snapshot(db: AsyncSession, w: Workspace, body: PublishBody) -> dict[str, object]:
    """What a publication of ``body.source`` holds now: bytes' blob, type, version, time."""
    if body.kind == "plot":
        plot = await db.get(Plot, body.source)
        if plot is None or plot.workspace_id != w.id:
            raise ApiError(
                404, "not_found", "The plot does not exist or was removed from the history."
            )
        return {
            "source": plot.id,
            "title": f"Plot {plot.id[:8]}",
            "mime": plot.mime,
            "sha256": plot.sha256,
            "size": plot.size,
            "file_version": None,
            "origin_path": None,
            "origin_version": None,
            "rendered_at": plot.created_at,
        }
    path = clean_path(body.source)
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if suffix not in _DOCUMENT_TYPES:
        raise ApiError(
            415,
            "not_publishable",
            f"'{path}' is not a rendered document: publish the .html a Render wrote "
            "(render the R Markdown, Quarto or notebook file first), or a plot.",
        )
    f = await get_file(db, w.id, path)
    stem = path[: -len(suffix)]
    origin: File | None = None
    for ext in _ORIGINS:
        origin = (
            await db.execute(select(File).where(File.workspace_id == w.id, File.path == stem + ext))
        ).scalar_one_or_none()
        if origin is not None:
            break
    return {
        "source": path,
        "title": path.rsplit("/", 1)[-1],
        "mime": _DOCUMENT_TYPES[suffix],
        "sha256": f.sha256,
        "size": f.size,
        "file_version": f.version,
        "origin_path": origin.path if origin else None,
        "origin_version": origin.version if origin else None,
        "rendered_at": f.updated_at,
    }


@router.post(
    "/api/workspaces/{workspace_id}/publications",
    summary="Publish a rendered document or a plot, or republish it (same source: same URL)",
)
async def publish(
    w: WritableWorkspace,
    body: PublishBody,
    caller: CallerDep,
    db: DbDep,
    response: Response,
) -> dict[str, object]:
    snap = await _snapshot(db, w, body)
    p = (
        await db.execute(
            select(Publication).where(
                Publication.workspace_id == w.id,
                Publication.kind == body.kind,
                Publication.source == snap["source"],
            )
        )
    ).scalar_one_or_none()
    if p is None:
        p = Publication(workspace_id=w.id, kind=body.kind, audience=body.audience)
        db.add(p)
        response.status_code = 201
    elif p.audience != body.audience:
        p.audience = body.audience
        p.link_token = None
    if p.audience == "link" and not p.link_token:
        p.link_token = secrets.token_urlsafe(24)
    for key, value in snap.items():
        setattr(p, key, value)
    p.published_by = caller.name
    p.published_at = utcnow()
    await db.commit()
    await db.refresh(p)
    return publication_info(p, with_link=True)


@router.get(
    "/api/workspaces/{workspace_id}/publications",
    summary="The workspace's publications, newest first",
)
async def list_publications(w: ReadableWorkspace, db: DbDep) -> list[dict[str, object]]:
    rows = await db.execute(
        select(Publication)
        .where(Publication.workspace_id == w.id)
        .order_by(Publication.published_at.desc())
    )
    return [publication_info(p, with_link=True) for p in rows.scalars()]


@router.get("/api/publications", summary="The publications you can see, newest first")
async def visible_publications(caller: CallerDep, db: DbDep) -> list[dict[str, object]]:
    """Everything of the caller's workspaces and every ``hub`` publication. Each says the
    caller's ``role`` in its workspace (owners and editors manage it: the web's "Shared
    with me" page) and, to members only, the workspace's name."""
    rows = await db.execute(select(Publication).order_by(Publication.published_at.desc()))
    seen: dict[str, tuple[str | None, str | None]] = {}  # workspace id → (role, name)
    out = []
    for p in rows.scalars():
        if p.workspace_id not in seen:
            ws = await db.get(Workspace, p.workspace_id)
            role = await user_role(db, caller.user, ws) if ws else None
            seen[p.workspace_id] = (role, ws.name if ws and role else None)
        role, name = seen[p.workspace_id]
        if role is not None or p.audience == "hub":
            info = publication_info(p, with_link=role is not None)
            out.append({**info, "role": role, "workspace_name": name})
    return out


async def _own_publication(db: AsyncSession, w: Workspace, publication_id: str) -> Publication:
    p = await db.get(Publication, publication_id)
    if p is None or p.workspace_id != w.id:
        raise _gone()
    return p


class AudienceBody(BaseModel):
    audience: Audience
    # a fresh token for a "link" publication even if the audience stays: the old link dies
    new_link: bool = False


@router.patch(
    "/api/workspaces/{workspace_id}/publications/{publication_id}",
    summary="Change a publication's audience (the old link stops working)",
)
async def change_audience(
    w: WritableWorkspace, publication_id: str, body: AudienceBody, db: DbDep
) -> dict[str, object]:
    p = await _own_publication(db, w, publication_id)
    if body.audience != p.audience or body.new_link:
        p.link_token = secrets.token_urlsafe(24) if body.audience == "link" else None
    p.audience = body.audience
    await db.commit()
    await db.refresh(p)
    return publication_info(p, with_link=True)


@router.delete(
    "/api/workspaces/{workspace_id}/publications/{publication_id}",
    summary="Unpublish: the URL and any link stop working",
)
async def unpublish(w: WritableWorkspace, publication_id: str, db: DbDep) -> dict[str, bool]:
    p = await _own_publication(db, w, publication_id)
    await db.delete(p)
    await db.commit()
    return {"ok": True}


async def _visible(
    request: Request, db: AsyncSession, publication_id: str, token: str | None
) -> Publication:
    """The publication if this visitor is in its audience: 401 when logging in would help,
    404 otherwise (a wrong token, not a member, unpublished — all look the same)."""
    p = await db.get(Publication, publication_id)
    if p is None:
        raise _gone()
    if (
        p.audience == "link"
        and token
        and p.link_token
        and hmac.compare_digest(token.encode(), p.link_token.encode())
    ):
        return p
    caller: Caller | None = await authenticate(request, db)
    if caller is None:
        if p.audience == "link":
            raise _gone()
        raise ApiError(
            401,
            "unauthorized",
            "This publication is for users of this hub: log in, then open the link again.",
        )
    if p.audience == "hub":
        return p
    ws = await db.get(Workspace, p.workspace_id)
    if ws is None or await user_role(db, caller.user, ws) is None:
        raise _gone()
    return p


def _page(p: Publication, token: str | None) -> str:
    query = f"?token={escape(token)}&amp;v={p.sha256[:12]}" if token else f"?v={p.sha256[:12]}"
    content = f"/api/pub/{p.id}/content{query}"
    title = escape(p.title)
    if p.kind == "document":
        what = f"Rendered {escape(iso(p.rendered_at) or '')} from {escape(p.source)} version {p.file_version}"
        if p.origin_path:
            what += f" (source {escape(p.origin_path)} version {p.origin_version})"
        body = (
            f'<iframe data-testid="publication-frame" sandbox="allow-scripts allow-popups" '
            f'src="{content}" title="{title}"></iframe>'
        )
    else:
        what = f"Plotted {escape(iso(p.rendered_at) or '')}"
        if p.mime == "application/pdf":  # no sandbox: browsers show no PDF in one (PDF_CSP)
            body = (
                f'<iframe data-testid="publication-frame" src="{content}" title="{title}"></iframe>'
            )
        else:
            body = f'<div class="plot"><img data-testid="publication-plot" src="{content}" alt="{title}"></div>'
    published = f"published {escape(iso(p.published_at) or '')} by {escape(p.published_by)}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
html, body {{ margin: 0; height: 100%; font: 14px system-ui, sans-serif; }}
body {{ display: flex; flex-direction: column; }}
header {{ padding: 6px 12px; border-bottom: 1px solid #ccc; background: #f6f6f6; }}
header h1 {{ font-size: 15px; margin: 0; display: inline; }}
header p {{ margin: 2px 0 0; color: #555; font-size: 12px; }}
iframe {{ flex: 1; border: 0; width: 100%; }}
.plot {{ flex: 1; display: flex; align-items: center; justify-content: center; }}
.plot img {{ max-width: 100%; max-height: 100%; }}
</style></head>
<body>
<header data-testid="publication-header"><h1>{title}</h1>
<p data-testid="publication-meta">{what} · {published} · for {_AUDIENCE_WORDS[p.audience]}</p>
</header>
{body}
</body></html>
"""


@router.get(
    "/api/pub/{publication_id}",
    summary="A publication's page (its header and the document in a sandbox)",
    response_class=HTMLResponse,
)
async def publication_page(
    publication_id: str, request: Request, db: DbDep, token: str | None = None
) -> Response:
    p = await _visible(request, db, publication_id, token)
    return HTMLResponse(
        _page(p, token if p.audience == "link" else None),
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@router.get(
    "/api/pub/{publication_id}/content",
    summary="A publication's bytes (HTML sandboxed in an opaque origin)",
)
async def publication_content(
    publication_id: str, request: Request, hub: HubDep, db: DbDep, token: str | None = None
) -> Response:
    p = await _visible(request, db, publication_id, token)
    headers = {
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": PDF_CSP if p.mime == "application/pdf" else SANDBOX_CSP,
        "X-Frame-Options": "SAMEORIGIN",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Referrer-Policy": "no-referrer",
    }
    return Response(await hub.blobs.get(p.sha256), media_type=p.mime, headers=headers)
