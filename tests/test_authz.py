"""Authorization sweep over every route of ``/api/openapi.json``.

Alice owns a project, a workspace, a file and an API token. Every route is then called
(1) without credentials and (2) as bob, a second non-admin user, naming alice's objects —
once with bob's API token and once as bob's logged-in browser (cookie + CSRF header). A
new route whose parameters or body this test cannot fill makes it fail, so nobody adds a
route without deciding who may call it. No session is started here."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from conftest import PASSWORD, HubProcess

PUBLIC = {("GET", "/api/health"), ("POST", "/api/login")}

# Routes about the caller himself: bob gets his own data, never alice's.
SELF = {
    ("GET", "/api/me"),
    ("GET", "/api/me/database"),
    ("GET", "/api/spark"),  # the Spark UI proxy (/spark-ui/…, not in OpenAPI): test_spark_ui.py
    ("POST", "/api/me/password"),
    ("POST", "/api/logout"),
    ("GET", "/api/tokens"),
    ("POST", "/api/tokens"),
    ("GET", "/api/projects"),
    ("POST", "/api/projects"),
    ("GET", "/api/workspaces"),
    ("GET", "/api/sessions"),
    ("GET", "/api/examples"),
    ("GET", "/api/profiles"),  # the session profiles bob himself may pick
    ("GET", "/api/publications"),  # what bob may see: none of alice's (hers is for members)
}

ADMIN_ONLY_PREFIXES = ("/api/users", "/api/doctor", "/api/environments")

FILE_CONTENT = "alice's secret analysis\n"
REPORT = "<!doctype html><p>alice's secret report</p>\n"


class World:
    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.alice_token = hub.make_user("alice")
        self.bob_token = hub.make_user("bob")
        self.alice = hub.client(self.alice_token)
        r = self.alice.post("/api/projects", json={"name": "alice-project"})
        assert r.status_code == 201, r.text
        self.project_id = r.json()["id"]
        r = self.alice.post(
            f"/api/projects/{self.project_id}/workspaces", json={"name": "alice-ws"}
        )
        assert r.status_code == 201, r.text
        self.workspace_id = r.json()["id"]
        r = self.alice.put(
            f"/api/workspaces/{self.workspace_id}/text/secret.R",
            json={"content": FILE_CONTENT, "base_version": 0},
        )
        assert r.status_code == 200, r.text
        r = self.alice.post("/api/tokens", json={"name": "alice-laptop"})
        assert r.status_code == 201, r.text
        self.token_id = r.json()["id"]
        self.token_secret = r.json()["token"]
        self.plot_id = uuid.uuid4().hex  # no code runs here, so no real plot exists
        r = self.alice.put(
            f"/api/workspaces/{self.workspace_id}/text/report.html",
            json={"content": REPORT, "base_version": 0},
        )
        assert r.status_code == 200, r.text
        r = self.alice.post(
            f"/api/workspaces/{self.workspace_id}/publications",
            json={"kind": "document", "source": "report.html", "audience": "members"},
        )
        assert r.status_code == 201, r.text
        self.publication_id = r.json()["id"]

        self.params: dict[str, str] = {
            "workspace_id": self.workspace_id,
            "project_id": self.project_id,
            "path": "secret.R",
            "plot_id": self.plot_id,
            "publication_id": self.publication_id,
            "run_id": uuid.uuid4().hex,  # no code runs here, so no run record exists
            "before": uuid.uuid4().hex,  # GET …/runs?before= (optional: not sent)
            "run": uuid.uuid4().hex,  # GET …/export?run= (optional: not sent)
            "token": "not-the-link-token",  # /api/pub/{id}?token= (optional: not sent)
            "token_id": self.token_id,
            "name": "alice",  # /api/users/{name}; also the import's workspace name
            "user_name": "bob",  # DELETE /api/workspaces/{id}/members/{user_name}
            "version": "1",
            "base_version": "1",
            "download": "false",
            "folder": "",
            "limit": "10",
            "view_id": "v1",
            "language": "r",
            "hidden": "false",
            "topic": "mean",
            "package": "base",
            "q": "mean",
            "format": "png",
            "width": "400",
            "height": "300",
            "res": "96",
        }
        self.alice_ids = {self.project_id, self.workspace_id, self.token_id}

    def bodies(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Valid request bodies, so that a refusal is about who calls, not what is sent."""
        ws = "/api/workspaces/{workspace_id}"
        zip_bytes = _zip({"x.R": b"1\n"})
        return {
            ("POST", "/api/login"): {"json": {"name": "alice", "password": "not-her-password"}},
            ("POST", "/api/me/password"): {
                "json": {"old_password": PASSWORD, "new_password": PASSWORD}
            },
            ("POST", "/api/tokens"): {"json": {"name": "bob-token", "expires_in_days": 1}},
            ("POST", "/api/users"): {"json": {"name": "mallory", "password": PASSWORD}},
            ("PATCH", "/api/users/{name}"): {"json": {"disabled": True}},
            ("POST", "/api/projects"): {"json": {"name": f"bob-{uuid.uuid4().hex[:8]}"}},
            ("PATCH", "/api/projects/{project_id}"): {"json": {"name": "stolen"}},
            ("POST", "/api/projects/{project_id}/workspaces"): {"json": {"name": "intruder"}},
            ("PATCH", ws): {"json": {"name": "stolen"}},
            ("PUT", f"{ws}/members"): {"json": {"user": "bob", "role": "editor"}},
            ("POST", "/api/projects/{project_id}/import"): {
                "files": {"file": ("x.zip", zip_bytes, "application/zip")}
            },
            ("PUT", f"{ws}/files/{{path}}"): {"content": b"overwritten by bob"},
            ("PUT", f"{ws}/text/{{path}}"): {
                "json": {"content": "overwritten by bob", "base_version": 1}
            },
            ("POST", f"{ws}/upload"): {"files": [("files", ("secret.R", b"overwritten by bob"))]},
            ("POST", f"{ws}/move"): {"json": {"from": "secret.R", "to": "moved.R"}},
            ("POST", f"{ws}/new"): {"json": {"path": "planted.R", "content": "by bob"}},
            ("POST", f"{ws}/restore/{{path}}"): {"json": {"version": 1}},
            ("POST", f"{ws}/environment/children"): {"json": {"path": ["x"]}},
            ("POST", f"{ws}/views"): {"json": {"name": "df"}},
            ("POST", f"{ws}/session"): {"json": {"profile": "local"}},
            ("POST", f"{ws}/views/{{view_id}}/rows"): {"json": {"offset": 0, "limit": 10}},
            ("POST", f"{ws}/publications"): {
                "json": {"kind": "document", "source": "report.html", "audience": "link"}
            },
            ("PATCH", f"{ws}/publications/{{publication_id}}"): {"json": {"audience": "link"}},
            ("POST", f"{ws}/runs/{{run_id}}/rerun"): {"json": {"ignore": []}},
            ("POST", "/api/environments/gc"): {"json": {"older_than_days": 30}},
        }


def _zip(files: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in files.items():
            zf.writestr(k, v)
    return buf.getvalue()


@pytest.fixture(scope="module")
def world(shared_hub: HubProcess) -> World:
    return World(shared_hub)


def routes(hub: HubProcess) -> list[tuple[str, str, dict[str, Any]]]:
    spec = httpx.get(f"{hub.url}/api/openapi.json").json()
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            out.append((method.upper(), path, op))
    return out


def build(world: World, method: str, path: str, op: dict[str, Any]) -> dict[str, Any]:
    """The URL and request arguments for one route, or fail naming what is missing."""
    url = path
    query: dict[str, str] = {}
    for p in op.get("parameters", []):
        name = p["name"]
        assert name in world.params, (
            f"{method} {path}: no value for parameter '{name}'; add it to World.params"
        )
        if p["in"] == "path":
            url = url.replace("{" + name + "}", world.params[name])
        elif p["in"] == "query":
            if p.get("required"):
                query[name] = world.params[name]
        else:
            raise AssertionError(f"{method} {path}: parameter in {p['in']} not handled")
    assert "{" not in url, f"{method} {path}: unfilled path parameter in {url}"
    kw: dict[str, Any] = {"params": query}
    if "requestBody" in op:
        bodies = world.bodies()
        assert (method, path) in bodies, (
            f"{method} {path} takes a body; add a valid one to World.bodies"
        )
        kw.update(bodies[(method, path)])
    return {"method": method, "url": url, **kw}


def test_route_table_is_fully_covered(world: World) -> None:
    """Every route can be filled in, and the lists above name only existing routes."""
    table = routes(world.hub)
    assert len(table) >= 40
    known = {(m, p) for m, p, _ in table}
    assert known >= PUBLIC | SELF
    assert set(world.bodies()) <= known
    for method, path, op in table:
        build(world, method, path, op)


def test_no_credentials_gives_401(world: World) -> None:
    anon = httpx.Client(base_url=world.hub.url, timeout=60)
    forged = httpx.Client(
        base_url=world.hub.url, cookies={"rsparkhub_session": "rss_forged"}, timeout=60
    )
    seen = 0
    for method, path, op in routes(world.hub):
        req = build(world, method, path, op)
        r = anon.request(**req)
        if (method, path) == ("GET", "/api/health"):
            assert r.status_code == 200
        elif (method, path) == ("POST", "/api/login"):
            assert r.status_code == 401 and r.json()["error"]["code"] == "login_failed"
            assert "rsparkhub_session" not in r.headers.get("set-cookie", "")
        else:
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.json()["error"]["code"] == "unauthorized", (method, path, r.text)
            # A forged or stale cookie is no better than none.
            r = forged.request(**req)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
        seen += 1
    assert seen >= 40
    _assert_alice_untouched(world)


@pytest.fixture(params=["token", "cookie"])
def bob(request: pytest.FixtureRequest, world: World) -> Iterator[httpx.Client]:
    if request.param == "token":
        c = world.hub.client(world.bob_token)
    else:
        c = httpx.Client(base_url=world.hub.url, timeout=60)
        r = c.post("/api/login", json={"name": "bob", "password": PASSWORD})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = c.cookies["rsparkhub_csrf"]
    try:
        yield c
    finally:
        c.close()


def test_bob_cannot_touch_alices_objects(world: World, bob: httpx.Client) -> None:
    hub = world.hub
    table = routes(hub)
    # Logout last: for the cookie client it ends bob's browser session.
    table.sort(key=lambda r: (r[0], r[1]) == ("POST", "/api/logout"))
    for method, path, op in table:
        req = build(world, method, path, op)
        r = bob.request(**req)
        where = (method, path, r.status_code, r.text[:300])
        assert not (500 <= r.status_code), where
        if (method, path) == ("GET", "/api/health"):
            assert r.status_code == 200, where
        elif (method, path) == ("POST", "/api/login"):
            assert r.status_code == 401 and r.json()["error"]["code"] == "login_failed", where
        elif path.startswith(ADMIN_ONLY_PREFIXES):
            assert r.status_code == 403, where
            assert r.json()["error"]["code"] == "admin_only", where
        elif (method, path) in SELF:
            assert 200 <= r.status_code < 300, where
            for secret in world.alice_ids | {world.token_secret, world.alice_token}:
                assert secret not in r.text, where
            assert "alice" not in r.text, where
        else:
            assert r.status_code in (403, 404), where
            assert r.json()["error"]["code"] in ("not_found", "forbidden"), where
            # Alice's ids are not echoed back to bob (no existence oracle beyond 404).
            assert world.workspace_id not in r.text and world.project_id not in r.text, where

    me = hub.client(world.bob_token).get("/api/me").json()
    assert me["name"] == "bob" and me["is_admin"] is False
    _assert_alice_untouched(world)


def _assert_alice_untouched(world: World) -> None:
    a = world.alice
    ws = world.workspace_id
    assert a.get(f"/api/projects/{world.project_id}").json()["name"] == "alice-project"
    assert [w["name"] for w in a.get(f"/api/projects/{world.project_id}/workspaces").json()] == [
        "alice-ws"
    ]
    r = a.get(f"/api/workspaces/{ws}/text/secret.R")
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "secret.R", "version": 1, "content": FILE_CONTENT}
    assert sorted(f["path"] for f in a.get(f"/api/workspaces/{ws}/files").json()) == [
        "report.html",
        "secret.R",
    ]
    # alice's publication is still hers, for members only, and nobody got a link to it.
    [pub] = a.get(f"/api/workspaces/{ws}/publications").json()
    assert pub["id"] == world.publication_id and pub["audience"] == "members"
    assert pub["url"] == f"/api/pub/{world.publication_id}"
    assert pub["published_by"] == "alice"
    assert [h["version"] for h in a.get(f"/api/workspaces/{ws}/history/secret.R").json()] == [1]
    assert a.get(f"/api/workspaces/{ws}/session").json() is None  # no session was started
    tokens = {t["name"]: t for t in a.get("/api/tokens").json()}
    assert tokens["alice-laptop"]["revoked"] is False
    assert world.hub.client(world.token_secret).get("/api/me").json()["name"] == "alice"
    me = a.get("/api/me").json()
    assert me["disabled"] is False and me["is_admin"] is False
    # alice's password is still hers.
    r = httpx.post(f"{world.hub.url}/api/login", json={"name": "alice", "password": PASSWORD})
    assert r.status_code == 200
    # No user was created by the sweep.
    assert "mallory" not in world.hub.cli("user", "list")


# --------------------------------------------------------------------------- websocket


async def _ws_refused(url: str, headers: dict[str, str]) -> str:
    """Connect and report how the hub refused: 'http <status>' or 'close <code>'."""
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed as exc:
                return f"close {exc.rcvd.code if exc.rcvd else None}"
            raise AssertionError("the hub accepted the websocket and sent a message")
    except InvalidStatus as exc:
        return f"http {exc.response.status_code}"
    except InvalidHandshake as exc:
        return f"handshake {exc}"


def _ws_url(
    world: World, workspace_id: str, route: str = "/api/workspaces/{workspace_id}/ws"
) -> str:
    path = route.replace("{workspace_id}", workspace_id).replace("{path}", "secret.R")
    return world.hub.url.replace("http://", "ws://") + path


# The browser's and API clients' sockets (OpenAPI lists no websocket: this list is checked
# against the app's routes below). /agent/ws is the agents' (tests/test_sessions.py).
CLIENT_SOCKETS = ["/api/workspaces/{workspace_id}/ws", "/api/workspaces/{workspace_id}/doc/{path}"]


def test_socket_list_is_complete(tmp_path: Any) -> None:
    from starlette.routing import WebSocketRoute

    from rsparkhub.config import Settings
    from rsparkhub.hub.app import create_app

    umask = os.umask(0o022)  # create_app sets the hub's umask (077): not this process's
    try:
        app = create_app(Settings(data_dir=tmp_path))
    finally:
        os.umask(umask)
    paths = {
        r.path.replace("{path:path}", "{path}") for r in app.routes if isinstance(r, WebSocketRoute)
    }
    assert paths == {*CLIENT_SOCKETS, "/agent/ws"}


@pytest.mark.parametrize("route", CLIENT_SOCKETS)
def test_websocket_refuses_bob_and_anonymous(world: World, route: str) -> None:
    url = _ws_url(world, world.workspace_id, route)
    refused = {"close 4404", "close 4401"}
    assert asyncio.run(_ws_refused(url, {"Authorization": f"Bearer {world.bob_token}"})) in refused
    assert asyncio.run(_ws_refused(url, {})) in refused
    assert asyncio.run(_ws_refused(url, {"Authorization": "Bearer rsh_forged"})) in refused
    # bob's browser session (same origin) is refused as well.
    c = httpx.Client(base_url=world.hub.url, timeout=60)
    c.post("/api/login", json={"name": "bob", "password": PASSWORD}).raise_for_status()
    cookie = f"rsparkhub_session={c.cookies['rsparkhub_session']}"
    assert asyncio.run(_ws_refused(url, {"Cookie": cookie, "Origin": world.hub.url})) in refused
    assert world.alice.get(f"/api/workspaces/{world.workspace_id}/session").json() is None


@pytest.mark.parametrize("route", CLIENT_SOCKETS)
def test_websocket_refuses_cross_site_cookie(world: World, route: str) -> None:
    """alice's own browser cookie, but the page is on another site: refused before accept."""
    c = httpx.Client(base_url=world.hub.url, timeout=60)
    c.post("/api/login", json={"name": "alice", "password": PASSWORD}).raise_for_status()
    secret = c.cookies["rsparkhub_session"]
    # The cookie itself is good: plain HTTP with it reads the workspace.
    assert c.get(f"/api/workspaces/{world.workspace_id}").status_code == 200
    url = _ws_url(world, world.workspace_id, route)
    for origin in ("https://evil.example", "http://127.0.0.1.evil.example", "null"):
        how = asyncio.run(
            _ws_refused(url, {"Cookie": f"rsparkhub_session={secret}", "Origin": origin})
        )
        assert how == "close 4403", (origin, how)
    assert world.alice.get(f"/api/workspaces/{world.workspace_id}/session").json() is None


# --------------------------------------------------------------------------- shared workspaces


def test_viewer_and_editor_roles(world: World) -> None:
    """A workspace alice shares with bob: a viewer reads only; an editor also writes files
    but cannot rename, delete or re-share the workspace. (Runs last: it shares objects.)"""
    a, hub = world.alice, world.hub
    bob = hub.client(world.bob_token)
    pid = a.post("/api/projects", json={"name": "shared-project"}).json()["id"]
    wid = a.post(f"/api/projects/{pid}/workspaces", json={"name": "shared"}).json()["id"]
    ws = f"/api/workspaces/{wid}"
    a.put(f"{ws}/text/s.R", json={"content": "v1\n", "base_version": 0}).raise_for_status()
    try:
        err = a.put(f"{ws}/members", json={"user": "nobody", "role": "viewer"})
        assert err.status_code == 404
        assert a.put(f"{ws}/members", json={"user": "bob", "role": "admin"}).status_code == 422
        r = a.put(f"{ws}/members", json={"user": "bob", "role": "viewer"})
        assert r.status_code == 200 and r.json() == {"user": "bob", "role": "viewer"}
        # Every member sees who has access.
        assert [(m["user"], m["role"]) for m in bob.get(f"{ws}/members").json()] == [
            ("alice", "owner"),
            ("bob", "viewer"),
        ]

        # Reads work for the viewer.
        assert bob.get(ws).json()["role"] == "viewer"
        assert bob.get(f"{ws}/text/s.R").json()["content"] == "v1\n"
        assert bob.get(f"{ws}/zip").status_code == 200
        assert bob.get(f"/api/projects/{pid}").status_code == 200
        assert [w["id"] for w in bob.get("/api/workspaces").json()] == [wid]
        # Writes do not.
        for method, url, kw in [
            ("PUT", f"{ws}/text/s.R", {"json": {"content": "bob", "base_version": 1}}),
            ("PUT", f"{ws}/files/s.R", {"content": b"bob", "params": {"base_version": 1}}),
            ("POST", f"{ws}/upload", {"files": [("files", ("n.R", b"bob"))]}),
            ("POST", f"{ws}/move", {"json": {"from": "s.R", "to": "t.R"}}),
            ("POST", f"{ws}/restore/s.R", {"json": {"version": 1}}),
            ("DELETE", f"{ws}/files/s.R", {}),
            ("POST", f"{ws}/session", {}),
            ("DELETE", f"{ws}/session", {}),
            ("PATCH", ws, {"json": {"name": "x"}}),
            ("PATCH", ws, {"json": {"settings": {"save_r_image": True}}}),
            ("DELETE", ws, {}),
            ("DELETE", f"{ws}/environment/x", {}),
            ("DELETE", f"{ws}/environment", {}),
            ("POST", f"{ws}/views", {"json": {"expr": "mtcars"}}),
            ("PUT", f"{ws}/members", {"json": {"user": "bob", "role": "editor"}}),
            ("PATCH", f"/api/projects/{pid}", {"json": {"name": "x"}}),
            ("DELETE", f"/api/projects/{pid}", {}),
            ("POST", f"/api/projects/{pid}/workspaces", {"json": {"name": "x"}}),
        ]:
            r = bob.request(method, url, **kw)
            assert r.status_code in (403, 404), (method, url, r.status_code, r.text)
        assert a.get(f"{ws}/text/s.R").json() == {"path": "s.R", "version": 1, "content": "v1\n"}

        # Promoted to editor: files yes, the workspace itself no.
        a.put(f"{ws}/members", json={"user": "bob", "role": "editor"}).raise_for_status()
        r = bob.put(f"{ws}/text/s.R", json={"content": "by bob\n", "base_version": 1})
        assert r.status_code == 200 and r.json()["version"] == 2
        r = bob.patch(ws, json={"settings": {"save_r_image": True}})
        assert r.status_code == 200 and r.json()["settings"] == {"save_r_image": True}, r.text
        assert a.get(f"{ws}/history/s.R").json()[0]["author"] == "bob"
        for method, url, kw in [
            ("PATCH", ws, {"json": {"name": "x"}}),
            ("DELETE", ws, {}),
            ("PUT", f"{ws}/members", {"json": {"user": "bob", "role": "editor"}}),
            ("DELETE", f"/api/projects/{pid}", {}),
        ]:
            r = bob.request(method, url, **kw)
            assert r.status_code in (403, 404), (method, url, r.status_code, r.text)
        assert a.get(ws).json()["name"] == "shared"
        # Sharing one workspace opens no other: alice's first workspace stays closed.
        assert bob.get(f"/api/workspaces/{world.workspace_id}").status_code == 404
    finally:
        assert a.delete(f"/api/projects/{pid}").status_code == 200
    assert bob.get(ws).status_code == 404
    assert bob.get("/api/workspaces").json() == []


def test_websocket_refusal_says_why(world: World) -> None:
    async def reason() -> tuple[int, str]:
        async with websockets.connect(_ws_url(world, world.workspace_id), open_timeout=10) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed as exc:
                assert exc.rcvd is not None
                return exc.rcvd.code, exc.rcvd.reason
        raise AssertionError("not refused")

    code, why = asyncio.run(reason())
    assert code == 4401 and why.startswith("unauthorized: ") and "token" in why


# --------------------------------------------------------------------------- viewers

# What a viewer of a workspace may call (everything else about it must be refused). None
# of these runs code a viewer chose: names are looked up, not evaluated, and the session is
# told the caller may not run code (Python help imports nothing, R help evaluates no
# \Sexpr: tests/test_api_security.py). A new route that names a workspace or project must
# be added here, or be refused to viewers, or this sweep fails.
VIEWER_MAY = {
    ("GET", "/api/projects/{project_id}"),
    ("GET", "/api/projects/{project_id}/workspaces"),
    ("GET", "/api/workspaces/{workspace_id}"),
    ("GET", "/api/workspaces/{workspace_id}/members"),  # who has access
    ("GET", "/api/workspaces/{workspace_id}/zip"),
    ("GET", "/api/workspaces/{workspace_id}/files"),
    ("GET", "/api/workspaces/{workspace_id}/limits"),  # sizes, to check an upload early
    ("GET", "/api/workspaces/{workspace_id}/files/{path}"),
    ("GET", "/api/workspaces/{workspace_id}/raw/{path}"),
    ("GET", "/api/workspaces/{workspace_id}/text/{path}"),
    ("GET", "/api/workspaces/{workspace_id}/history/{path}"),
    ("GET", "/api/workspaces/{workspace_id}/session"),
    ("GET", "/api/workspaces/{workspace_id}/executions"),
    ("GET", "/api/workspaces/{workspace_id}/plots"),
    ("GET", "/api/workspaces/{workspace_id}/publications"),
    ("GET", "/api/workspaces/{workspace_id}/runs"),  # run records: read-only for everyone
    ("GET", "/api/workspaces/{workspace_id}/runs/{run_id}"),
    ("GET", "/api/workspaces/{workspace_id}/runs/{run_id}/environment"),
    ("GET", "/api/workspaces/{workspace_id}/runs/{run_id}/transcript"),
    ("GET", "/api/workspaces/{workspace_id}/rerun"),  # a re-run workspace shared with a viewer
    # a bundle of files and records a viewer can read anyway (a re-run runs code: refused)
    ("GET", "/api/workspaces/{workspace_id}/export"),
    ("GET", "/api/workspaces/{workspace_id}/plots/{plot_id}"),
    ("GET", "/api/workspaces/{workspace_id}/plots/{plot_id}/render"),
    ("GET", "/api/workspaces/{workspace_id}/environment"),
    # the last package snapshot (a new one, which starts R, only for writers)
    ("GET", "/api/workspaces/{workspace_id}/packages"),
    ("POST", "/api/workspaces/{workspace_id}/environment/children"),
    ("POST", "/api/workspaces/{workspace_id}/views"),  # by name only: see below
    ("POST", "/api/workspaces/{workspace_id}/views/{view_id}/rows"),
    ("DELETE", "/api/workspaces/{workspace_id}/views/{view_id}"),
    ("GET", "/api/workspaces/{workspace_id}/help"),
    ("GET", "/api/workspaces/{workspace_id}/help/search"),
}


def test_viewer_reaches_only_reads(world: World) -> None:
    """bob, a viewer of a workspace alice shares, calls every route naming it: the ones in
    VIEWER_MAY pass the access check (no session runs here, so the session's routes say
    409 ``session_not_running``), every other one is refused. (Runs last: it shares.)"""
    a, hub = world.alice, world.hub
    bob = hub.client(world.bob_token)
    pid = a.post("/api/projects", json={"name": "viewer-sweep"}).json()["id"]
    wid = a.post(f"/api/projects/{pid}/workspaces", json={"name": "watched"}).json()["id"]
    ws = f"/api/workspaces/{wid}"
    a.put(f"{ws}/text/secret.R", json={"content": "v1\n", "base_version": 0}).raise_for_status()
    a.put(f"{ws}/members", json={"user": "bob", "role": "viewer"}).raise_for_status()
    as_viewer = World.__new__(World)
    as_viewer.params = {**world.params, "workspace_id": wid, "project_id": pid}
    table = routes(hub)
    known = {(m, p) for m, p, _ in table}
    assert VIEWER_MAY <= known, VIEWER_MAY - known
    seen = 0
    try:
        for method, path, op in table:
            if (method, path) in PUBLIC | SELF or path.startswith(ADMIN_ONLY_PREFIXES):
                continue
            if "{workspace_id}" not in path and "{project_id}" not in path:
                continue
            r = bob.request(**build(as_viewer, method, path, op))
            where = (method, path, r.status_code, r.text[:300])
            assert r.status_code < 500, where
            if (method, path) in VIEWER_MAY:
                assert r.status_code not in (401, 403), where
                if r.status_code == 404:  # a plot or view that does not exist, not the workspace
                    assert not r.json()["error"]["message"].startswith("The workspace"), where
                if r.status_code == 409:
                    assert r.json()["error"]["code"] == "session_not_running", where
            else:
                assert r.status_code in (403, 404), where
                assert r.json()["error"]["code"] in ("forbidden", "not_found"), where
            seen += 1
        assert seen >= len(VIEWER_MAY) + 15
        # An expression is code: refused to a viewer with a code saying why.
        r = bob.post(f"{ws}/views", json={"expr": "mtcars"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "viewer_cannot_run_code"
        # Nothing changed: the file, the membership, no session.
        assert a.get(f"{ws}/text/secret.R").json()["content"] == "v1\n"
        assert a.get(ws).json()["name"] == "watched"
        assert bob.get(ws).json()["role"] == "viewer"
        assert a.get(f"{ws}/session").json() is None
    finally:
        assert a.delete(f"/api/projects/{pid}").status_code == 200
    assert bob.get(ws).status_code == 404


def test_member_removal_closes_document_sockets(world: World) -> None:
    """bob edits a shared document; made viewer, his socket stays (read-only); removed, it
    closes with 4403. (Runs last: it shares.)"""
    a = world.alice
    pid = a.post("/api/projects", json={"name": "docs"}).json()["id"]
    wid = a.post(f"/api/projects/{pid}/workspaces", json={"name": "docs"}).json()["id"]
    ws = f"/api/workspaces/{wid}"
    a.put(f"{ws}/text/secret.R", json={"content": "v1\n", "base_version": 0}).raise_for_status()
    a.put(f"{ws}/members", json={"user": "bob", "role": "editor"}).raise_for_status()
    url = _ws_url(world, wid, CLIENT_SOCKETS[1])

    async def watch() -> tuple[list[object], int | None]:
        notes: list[object] = []
        headers = {"Authorization": f"Bearer {world.bob_token}"}
        async with websockets.connect(url, additional_headers=headers, open_timeout=10) as sock:
            notes.append(json.loads(await asyncio.wait_for(sock.recv(), 10)))  # the version
            r = await asyncio.to_thread(
                a.put, f"{ws}/members", json={"user": "bob", "role": "viewer"}
            )
            r.raise_for_status()
            while True:
                frame = await asyncio.wait_for(sock.recv(), 10)
                if isinstance(frame, str):
                    notes.append(json.loads(frame))
                    break
            r = await asyncio.to_thread(a.delete, f"{ws}/members/bob")
            assert r.json()["sockets_closed"] == 1, r.text
            try:
                while True:
                    await asyncio.wait_for(sock.recv(), 10)
            except ConnectionClosed as exc:
                return notes, exc.rcvd.code if exc.rcvd else None

    try:
        notes, code = asyncio.run(watch())
        first = notes[0]
        assert isinstance(first, dict) and (first["type"], first["version"]) == ("version", 1)
        assert notes[1] == {"type": "role", "can_write": False}
        assert code == 4403
    finally:
        assert a.delete(f"/api/projects/{pid}").status_code == 200


def test_revoked_credentials_close_document_sockets(world: World) -> None:
    """A document socket lives no longer than its credential: a deleted API token closes
    its sockets at once (4401); a user disabled from the command line loses the rest within
    ``credential_check_s`` (15 s here). (Runs last: it shares.)"""
    a, hub = world.alice, world.hub
    user = f"rev{uuid.uuid4().hex[:6]}"
    first = hub.make_user(user)
    pid = a.post("/api/projects", json={"name": "revoked"}).json()["id"]
    wid = a.post(f"/api/projects/{pid}/workspaces", json={"name": "revoked"}).json()["id"]
    ws = f"/api/workspaces/{wid}"
    a.put(f"{ws}/text/secret.R", json={"content": "v1\n", "base_version": 0}).raise_for_status()
    a.put(f"{ws}/members", json={"user": user, "role": "editor"}).raise_for_status()
    with hub.client(first) as c:
        made = c.post("/api/tokens", json={"name": "second"}).json()
    url = _ws_url(world, wid, CLIENT_SOCKETS[1])

    async def closed(sock: Any, within: float) -> int | None:
        try:
            while True:
                await asyncio.wait_for(sock.recv(), within)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    async def run() -> tuple[int | None, int | None]:
        def bearer(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        async with (
            websockets.connect(url, additional_headers=bearer(first)) as by_first,
            websockets.connect(url, additional_headers=bearer(made["token"])) as by_second,
        ):
            for sock in (by_first, by_second):
                assert json.loads(await asyncio.wait_for(sock.recv(), 10))["type"] == "version"
            with hub.client(first) as c:
                assert c.delete(f"/api/tokens/{made['id']}").is_success
            second_code = await closed(by_second, 10)
            await asyncio.to_thread(hub.cli, "user", "disable", user)
            return second_code, await closed(by_first, 40)

    try:
        assert asyncio.run(run()) == (4401, 4401)
    finally:
        assert a.delete(f"/api/projects/{pid}").status_code == 200


def test_member_removal_is_owner_only(world: World) -> None:
    """DELETE …/members/{user}: the owner removes a member; a member cannot remove anyone,
    themselves included; unknown members are 404. (Runs last: it shares.)"""
    a, hub = world.alice, world.hub
    bob = hub.client(world.bob_token)
    pid = a.post("/api/projects", json={"name": "members"}).json()["id"]
    wid = a.post(f"/api/projects/{pid}/workspaces", json={"name": "team"}).json()["id"]
    ws = f"/api/workspaces/{wid}"
    try:
        a.put(f"{ws}/members", json={"user": "bob", "role": "editor"}).raise_for_status()
        r = bob.delete(f"{ws}/members/bob")
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
        r = bob.delete(f"{ws}/members/alice")
        assert r.status_code == 403, r.text
        assert bob.get(ws).json()["role"] == "editor"
        r = a.delete(f"{ws}/members/nobody")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
        r = a.delete(f"{ws}/members/alice")  # the owner is no member: nothing to remove
        assert r.status_code == 404, r.text
        r = a.delete(f"{ws}/members/bob")
        assert r.status_code == 200, r.text
        assert r.json() == {"user": "bob", "removed": True, "sockets_closed": 0}
        assert bob.get(ws).status_code == 404
        assert a.delete(f"{ws}/members/bob").status_code == 404  # already gone
    finally:
        assert a.delete(f"/api/projects/{pid}").status_code == 200
