r"""Inside the session over HTTP: variables, data views, help and help search, plot
re-rendering. Each route asks the running session's agent (``Sessions.call``); the
agent answers from the kernel while it is idle (``kernel_busy`` otherwise).

Reading (variables, views by name, help, renders) needs read access to the workspace;
anything that changes the session or evaluates code (delete, clear, a view of an
expression) needs write access, as running code does.

A viewer's request carries data, never code: names and paths are looked up, not evaluated,
and the agent is told the caller may not run code (``CallMessage.may_run_code``), so that
Python help imports nothing and R help evaluates no ``\Sexpr`` for them. Every error code
an agent can answer with has its HTTP status in ``AGENT_ERROR_STATUS``.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Annotated, Any, Literal

import nh3
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from rsparkhub import protocol as P
from rsparkhub.hub.access import workspace_for, workspace_role
from rsparkhub.hub.api.deps import CallerDep, DbDep, HubDep
from rsparkhub.hub.api.headers import attachment
from rsparkhub.hub.auth import Caller
from rsparkhub.hub.db.models import Plot, Workspace
from rsparkhub.hub.errors import ApiError, not_found

router = APIRouter(tags=["introspection"])

Lang = P.Language
HelpLang = Literal["r", "python"]
# Every error code an agent answers a call with (agent/*.py, among them introspect.py,
# kernels.py, pool.py and the pykernel*.py modules, and agent/r/rsparkhub.R;
# tests/test_api_security.py checks the list is complete). What the caller asked for is wrong: 4xx. The session failed: 502/503/504.
AGENT_ERROR_STATUS = {
    "not_found": 404,
    "view_not_found": 404,
    "help_not_found": 404,
    "plot_not_found": 404,
    "file_not_found": 404,
    "not_tabular": 422,
    "invalid_expression": 422,
    "unknown_column": 422,
    "invalid_filter": 422,
    "invalid_request": 422,
    "invalid_argument": 422,
    "invalid_format": 422,
    "unsupported": 422,
    "language_unavailable": 422,
    "plot_failed": 422,  # e.g. too small for the plot's margins
    "viewer_cannot_run_code": 403,
    "kernel_busy": 409,
    "not_ready": 409,
    "busy": 409,
    "plot_not_renderable": 409,
    "kernel_restarted": 409,
    "kernel_not_running": 409,
    "shutting_down": 409,
    "unknown_method": 502,  # an agent older than this hub
    "internal_error": 502,  # the session's code failed, not the hub
    "introspection_failed": 502,
    "io_error": 503,
    "kernel_died": 503,
    "kernel_start_failed": 503,
    "restart_failed": 503,
    "timeout": 504,
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def _workspace(
    db: DbDep, caller: Caller, workspace_id: str, need: Literal["read", "write"]
) -> tuple[Workspace, bool]:
    """The workspace, and whether the caller may run code in it (owner or editor)."""
    w = await workspace_for(db, caller, workspace_id, need)
    return w, await workspace_role(db, caller, w) in ("owner", "editor")


async def _call(
    hub: HubDep,
    workspace_id: str,
    language: P.Language,
    method: P.CallMethod,
    params: dict[str, Any],
    may_run_code: bool,
) -> P.CallResult:
    res = await hub.sessions.call(workspace_id, language, method, params, may_run_code=may_run_code)
    if not res.ok:
        code = res.error_code or "internal_error"
        # a code this hub does not know yet: the session's failure, never a hub 500
        status = AGENT_ERROR_STATUS.get(code, 502)
        raise ApiError(status, code, res.message or "The session could not answer.")
    return res


# --------------------------------------------------------------------------- environment


@router.get(
    "/api/workspaces/{workspace_id}/environment",
    summary="The variables of one language's session (R global env, Python __main__, bash)",
)
async def list_environment(
    workspace_id: str,
    caller: CallerDep,
    hub: HubDep,
    db: DbDep,
    language: Lang = "r",
    hidden: bool = False,
) -> dict[str, Any]:
    w, may_run_code = await _workspace(db, caller, workspace_id, "read")
    res = await _call(hub, w.id, language, "env_list", {"hidden": hidden}, may_run_code)
    return {"language": language, **res.result}


@router.get(
    "/api/workspaces/{workspace_id}/packages",
    summary="The session's R and Python packages: name, version and source "
    "(base, environment, overlay)",
)
async def list_packages(
    workspace_id: str, caller: CallerDep, hub: HubDep, db: DbDep
) -> dict[str, Any]:
    w, may_run_code = await _workspace(db, caller, workspace_id, "read")
    res = await _call(hub, w.id, "python", "packages", {}, may_run_code)
    return res.result


class ChildrenBody(_Body):
    language: Lang = "r"
    path: list[Annotated[str, Field(max_length=1024)] | int] = Field(min_length=1, max_length=64)
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=1000)


@router.post(
    "/api/workspaces/{workspace_id}/environment/children",
    summary="A variable's children (list elements, members, items, attributes), paged",
)
async def environment_children(
    workspace_id: str, body: ChildrenBody, caller: CallerDep, hub: HubDep, db: DbDep
) -> dict[str, Any]:
    w, may_run_code = await _workspace(db, caller, workspace_id, "read")
    params = body.model_dump(exclude={"language"})
    res = await _call(hub, w.id, body.language, "env_children", params, may_run_code)
    return res.result


@router.delete("/api/workspaces/{workspace_id}/environment/{name}", summary="Remove one variable")
async def delete_variable(
    workspace_id: str,
    name: str,
    caller: CallerDep,
    hub: HubDep,
    db: DbDep,
    language: Lang = "r",
) -> dict[str, Any]:
    w, may_run_code = await _workspace(db, caller, workspace_id, "write")
    res = await _call(hub, w.id, language, "env_delete", {"names": [name]}, may_run_code)
    return res.result


@router.delete(
    "/api/workspaces/{workspace_id}/environment",
    summary="Remove every variable (hidden ones too with hidden=true)",
)
async def clear_environment(
    workspace_id: str,
    caller: CallerDep,
    hub: HubDep,
    db: DbDep,
    language: Lang = "r",
    hidden: bool = False,
) -> dict[str, Any]:
    w, may_run_code = await _workspace(db, caller, workspace_id, "write")
    res = await _call(hub, w.id, language, "env_clear", {"hidden": hidden}, may_run_code)
    return res.result


# --------------------------------------------------------------------------- data viewer


class ViewBody(_Body):
    language: Literal["r", "python"] = "r"
    name: str | None = Field(default=None, min_length=1, max_length=1024)
    expr: str | None = Field(default=None, min_length=1, max_length=100_000)


class SortKey(_Body):
    column: str = Field(min_length=1, max_length=1024)
    descending: bool = False


class Filter(_Body):
    column: str = Field(min_length=1, max_length=1024)
    op: Literal[
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "between",
        "is_missing",
        "not_missing",
        "in",
        "contains",
        "regex",
    ]
    value: str | float | int | bool | None = None
    values: list[str | float | int | bool | None] | None = Field(default=None, max_length=10_000)
    min: str | float | int | None = None
    max: str | float | int | None = None
    pattern: str | None = Field(default=None, max_length=1000)


class RowsBody(_Body):
    language: Literal["r", "python"] = "r"
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=1000)
    sort: list[SortKey] = Field(default_factory=list, max_length=32)
    filters: list[Filter] = Field(default_factory=list, max_length=64)
    search: str | None = Field(default=None, max_length=1000)


@router.post(
    "/api/workspaces/{workspace_id}/views",
    status_code=201,
    summary="Open a data view of a data frame / matrix by variable name or expression",
)
async def open_view(
    workspace_id: str, body: ViewBody, caller: CallerDep, hub: HubDep, db: DbDep
) -> dict[str, Any]:
    if (body.name is None) == (body.expr is None):
        raise ApiError(422, "invalid_request", "Give either 'name' or 'expr'.")
    w, may_run_code = await _workspace(db, caller, workspace_id, "read")
    if body.expr is not None and not may_run_code:
        # an expression is code: only those who may run code may evaluate one
        raise ApiError(
            403,
            "viewer_cannot_run_code",
            "Viewers cannot evaluate expressions in the session; open a variable by 'name'.",
        )
    params = {"name": body.name} if body.name is not None else {"expr": body.expr}
    res = await _call(hub, w.id, body.language, "view_open", params, may_run_code)
    return {"language": body.language, **res.result}


@router.post(
    "/api/workspaces/{workspace_id}/views/{view_id}/rows",
    summary="Rows of a view: sort, filter, search, then offset/limit (sort/filter cached)",
)
async def view_rows(
    workspace_id: str, view_id: str, body: RowsBody, caller: CallerDep, hub: HubDep, db: DbDep
) -> dict[str, Any]:
    w, may_run_code = await _workspace(db, caller, workspace_id, "read")
    params = {"view_id": view_id, **body.model_dump(exclude={"language"}, exclude_none=True)}
    params["filters"] = [f.model_dump(exclude_none=True) for f in body.filters]
    res = await _call(hub, w.id, body.language, "view_rows", params, may_run_code)
    return res.result


@router.delete("/api/workspaces/{workspace_id}/views/{view_id}", summary="Release a view")
async def close_view(
    workspace_id: str,
    view_id: str,
    caller: CallerDep,
    hub: HubDep,
    db: DbDep,
    language: Literal["r", "python"] = "r",
) -> dict[str, Any]:
    w, may_run_code = await _workspace(db, caller, workspace_id, "read")
    res = await _call(hub, w.id, language, "view_close", {"view_id": view_id}, may_run_code)
    return res.result


# --------------------------------------------------------------------------- help

_HELP_LINK = re.compile(r'href="rsparkhub-help:(r|python)/([^/"]*)/([^"]*)"')
_TAGS = {
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "caption",
    "code",
    "dd",
    "del",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "kbd",
    "li",
    "ol",
    "p",
    "pre",
    "samp",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "tt",
    "u",
    "ul",
    "var",
    "font",
    "big",
    "center",
}
_ATTRS = {
    "a": {
        "href",
        "title",
        "name",
        "id",
        "data-help-language",
        "data-help-package",
        "data-help-topic",
    },
    "img": {"src", "alt", "width", "height"},
    "td": {"align", "valign", "colspan", "rowspan"},
    "th": {"align", "valign", "colspan", "rowspan"},
    "table": {"summary", "width"},
    "font": {"color", "size"},
    "*": {"class", "id", "lang"},
}
HELP_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


def help_url(workspace_id: str, language: str, package: str, topic: str) -> str:
    from urllib.parse import urlencode

    query = {"language": language, "topic": topic, "format": "html"}
    if package:
        query["package"] = package
    return f"/api/workspaces/{workspace_id}/help?{urlencode(query)}"


def sanitize_help(workspace_id: str, raw: str) -> str:
    """Help HTML a client may display: links between help pages point at this hub's help
    endpoint (and carry data-help-* attributes for a pane that intercepts clicks); no
    scripts, styles, event handlers, frames or forms; only http(s)/mailto/relative links
    and data: images."""

    def link(m: re.Match[str]) -> str:
        lang, pkg, topic = m.group(1), html.unescape(m.group(2)), html.unescape(m.group(3))
        from urllib.parse import unquote

        pkg, topic = unquote(pkg), unquote(topic)
        return (
            f'href="{html.escape(help_url(workspace_id, lang, pkg, topic))}" '
            f'data-help-language="{lang}" data-help-package="{html.escape(pkg)}" '
            f'data-help-topic="{html.escape(topic)}"'
        )

    linked = _HELP_LINK.sub(link, raw)
    return nh3.clean(
        linked,
        tags=_TAGS,
        attributes=_ATTRS,
        url_schemes={"http", "https", "mailto", "data"},
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def _help_matches(workspace_id: str, topic: str, raw: Any) -> list[dict[str, str]]:
    """The pages a topic names in several packages, each with the URL that opens it."""
    matches = []
    for m in raw if isinstance(raw, list) else []:
        if not isinstance(m, dict) or not m.get("package"):
            continue
        pkg, t = str(m["package"]), str(m.get("topic") or topic)
        matches.append(
            {
                "topic": t,
                "package": pkg,
                "page": str(m.get("page") or ""),
                "title": str(m.get("title") or ""),
                "url": help_url(workspace_id, "r", pkg, t).replace("format=html", "format=json"),
            }
        )
    return matches


def _html_page(title: str, body: str) -> Response:
    page = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    )
    return Response(
        page,
        media_type="text/html",
        headers={"Content-Security-Policy": HELP_CSP, "X-Content-Type-Options": "nosniff"},
    )


@router.get(
    "/api/workspaces/{workspace_id}/help",
    summary=(
        "A help page as sanitized HTML (R: from the installed Rd; Python: pydoc). "
        'JSON: {"kind": "page", "language", "topic", "package", "title", "html"}; when an R '
        "topic names pages in several packages and no package is given (R 4.2's plot: "
        'base and graphics), {"kind": "choices", "language", "topic", "matches": [{"topic", '
        '"package", "page", "title", "url"}…]} — ask again with one match\'s package.'
    ),
    response_model=None,
)
async def help_page(
    workspace_id: str,
    caller: CallerDep,
    hub: HubDep,
    db: DbDep,
    topic: Annotated[str, Query(min_length=1, max_length=512)],
    language: HelpLang = "r",
    package: Annotated[str | None, Query(max_length=256)] = None,
    format: Literal["json", "html"] = "json",
) -> dict[str, Any] | Response:
    w, may_run_code = await _workspace(db, caller, workspace_id, "read")
    res = await _call(
        hub,
        w.id,
        language,
        "help_html",
        {"topic": topic, "package": package or None},
        may_run_code,
    )
    r = res.result
    if "matches" in r:
        matches = _help_matches(w.id, topic, r.get("matches"))
        choices = {"kind": "choices", "language": language, "topic": topic, "matches": matches}
        if format == "json":
            return choices
        items = "".join(
            f'<li><a href="{html.escape(help_url(w.id, language, m["package"], m["topic"]))}">'
            f"{html.escape(m['package'])}::{html.escape(m['page'] or m['topic'])}</a> — "
            f"{html.escape(m['title'])}</li>"
            for m in matches
        )
        body = (
            f"<p>Help on topic <code>{html.escape(topic)}</code> was found in several "
            f"packages:</p><ul>{items}</ul>"
        )
        return _html_page(topic, body)
    body = sanitize_help(w.id, str(r.get("html") or ""))
    info = {
        "kind": "page",
        "language": language,
        "topic": r.get("topic") or topic,
        "package": r.get("package"),
        "title": r.get("title"),
        "html": body,
    }
    if format == "json":
        return info
    return _html_page(str(info["title"] or topic), body)


@router.get(
    "/api/workspaces/{workspace_id}/help/search",
    summary=(
        "Search help (R packages and Python modules), ranked: topics, aliases, titles, "
        'concepts, and the full text of every page (matched includes "text")'
    ),
)
async def help_search(
    workspace_id: str,
    caller: CallerDep,
    hub: HubDep,
    db: DbDep,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    language: HelpLang | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    w, may_run_code = await _workspace(db, caller, workspace_id, "read")
    live = hub.sessions.running(w.id)
    both: tuple[HelpLang, ...] = ("r", "python")
    langs: list[HelpLang] = (
        [language]
        if language
        else [x for x in both if live is None or not live.languages or x in live.languages]
    )
    results: list[dict[str, Any]] = []
    for lang in langs:
        params = {"query": q, "limit": limit}
        res = await _call(hub, w.id, lang, "help_search", params, may_run_code)
        results += [{"language": lang, **item} for item in res.result.get("results") or []]
    if len(langs) > 1:
        results.sort(key=lambda x: -float(x.get("score") or 0))
    return {"query": q, "results": results[:limit]}


# --------------------------------------------------------------------------- plots


@router.get(
    "/api/workspaces/{workspace_id}/plots/{plot_id}/render",
    summary="Draw a plot again at another size / resolution, as PNG, SVG or PDF",
    response_class=Response,
)
async def render_plot(
    workspace_id: str,
    plot_id: str,
    caller: CallerDep,
    hub: HubDep,
    db: DbDep,
    format: Literal["png", "svg", "pdf"] = "png",
    width: Annotated[int, Query(ge=16, le=8000)] = 800,
    height: Annotated[int, Query(ge=16, le=8000)] = 600,
    res: Annotated[int, Query(ge=36, le=600)] = 96,
    download: bool = False,
) -> Response:
    w, may_run_code = await _workspace(db, caller, workspace_id, "read")
    plot = await db.get(Plot, plot_id)
    if plot is None or plot.workspace_id != w.id:
        raise not_found("The plot")
    # the agent knows which kernel drew it; the language here only routes the call
    result = await _call(
        hub,
        w.id,
        "r",
        "plot_render",
        {"plot_id": plot_id, "format": format, "width": width, "height": height, "res": res},
        may_run_code,
    )
    data = base64.b64decode(result.content_b64 or "")
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
    if download:
        headers["Content-Disposition"] = attachment(f"plot-{plot_id[:8]}.{format}")
    mime = str(result.result.get("mime") or "application/octet-stream")
    return Response(data, media_type=mime, headers=headers)
