"""The Spark web UI through the hub (hub/api/spark.py) against alice's real embedded Spark
Connect server: who may open it (the route is outside OpenAPI, so its authorization is
tested here: anonymous, forged cookie, another user's token and browser cookie, an admin's
token and browser cookie — only alice gets in), that Spark's own links work unchanged
under /spark-ui/alice/ (Jobs page, a stage page, static assets, the /api/v1 JSON), the
headers the proxy adds and drops, ``GET /api/spark``, that the server's ports listen
on loopback only, and that its UI answers only requests the hub signs."""

from __future__ import annotations

import asyncio
import base64
import html
import ipaddress
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from rsparkhub.client import HubClient
from rsparkhub.hub.api.spark import (
    UI_CSP,
    forward_request_headers,
    forward_response_headers,
    map_location,
)
from rsparkhub.hub.spark import ui_bearer, ui_key

from conftest import PASSWORD, HubProcess, embedded_spark_hub, spark_server_pids

pytestmark = pytest.mark.slow
UI = "/spark-ui/alice"


class World:
    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.admin_token = hub.make_user("root", admin=True)
        self.alice_token = hub.make_user("alice")
        self.bob_token = hub.make_user("bob")

    def token(self, who: str) -> httpx.Client:
        token = {"root": self.admin_token, "alice": self.alice_token, "bob": self.bob_token}[who]
        return self.hub.client(token)

    def browser(self, who: str) -> httpx.Client:
        c = httpx.Client(base_url=self.hub.url, timeout=60)
        r = c.post("/api/login", json={"name": who, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return c


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with embedded_spark_hub(tmp_path_factory.mktemp("spark-ui") / "data") as hub:
        yield World(hub)


def _error(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


def test_no_ui_before_the_server_runs(world: World) -> None:
    alice = world.token("alice")
    r = alice.get(f"{UI}/jobs/")
    assert r.status_code == 404 and _error(r) == "spark_off", r.text
    assert "not running" in r.json()["error"]["message"]
    info = alice.get("/api/spark").json()
    assert info["state"] == "down" and info["ui_url"] is None


@pytest.fixture(scope="module")
def running(world: World) -> dict[str, Any]:
    """alice runs Spark work (which starts the server); the application's REST facts."""

    async def work() -> None:
        async with HubClient(world.hub.url, world.alice_token) as c:
            w = await c.ensure_workspace("ui")
            async with c.attach(w["id"]) as s:
                r = await asyncio.wait_for(
                    s.run(
                        "from pyspark.sql import SparkSession\n"
                        "spark = SparkSession.builder.getOrCreate()\n"
                        "spark.range(0, 100000, 1, 4).selectExpr('id % 7 AS k')"
                        ".groupBy('k').count().collect()\n",
                        language="python",
                    ),
                    240,
                )
                assert r.ok, [(e.ename, e.evalue) for e in r.errors]

    asyncio.run(work())
    alice = world.token("alice")
    deadline = time.monotonic() + 60
    while alice.get("/api/spark").json()["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    apps = alice.get(f"{UI}/api/v1/applications").json()
    app_id = apps[0]["id"]
    stages = alice.get(f"{UI}/api/v1/applications/{app_id}/stages").json()
    return {"app_id": app_id, "stages": stages}


def test_only_its_user_opens_a_ui(world: World, running: dict[str, Any]) -> None:
    url = f"{UI}/jobs/"
    anon = httpx.Client(base_url=world.hub.url, timeout=60)
    r = anon.get(url)
    assert r.status_code == 401 and _error(r) == "unauthorized"
    forged = httpx.Client(
        base_url=world.hub.url, cookies={"rsparkhub_session": "rss_forged"}, timeout=60
    )
    assert forged.get(url).status_code == 401
    r = anon.get(url, headers={"Authorization": "Bearer rsh_forged"})
    assert r.status_code == 401
    # bob, and an administrator: refused before anything is said about alice's server
    for other in (
        world.token("bob"),
        world.browser("bob"),
        world.token("root"),
        world.browser("root"),
    ):
        r = other.get(url)
        assert r.status_code == 403 and _error(r) == "forbidden", r.text
        assert "its own user" in r.json()["error"]["message"]
        assert other.head(url).status_code == 403
        assert "Spark Jobs" not in r.text
        assert other.get(f"{UI}/api/v1/applications").status_code == 403
    for alice in (world.token("alice"), world.browser("alice")):
        r = alice.get(url)
        assert r.status_code == 200, r.text
        assert "Spark Jobs" in r.text
        assert alice.head(url).status_code == 200


def test_other_ui_routes(world: World, running: dict[str, Any]) -> None:
    # bob has no server running: his own UI is not there (and alice may not ask)
    r = world.token("bob").get("/spark-ui/bob/jobs/")
    assert r.status_code == 404 and _error(r) == "spark_off", r.text
    assert world.token("alice").get("/spark-ui/bob/jobs/").status_code == 403
    # the shared server's UI of earlier versions is gone: '_shared' is just a name
    r = world.token("root").get("/spark-ui/_shared/jobs/")
    assert r.status_code == 403 and _error(r) == "forbidden", r.text
    r = world.token("root").get("/spark-ui/Not%20A%20User/")
    assert r.status_code == 404 and _error(r) == "not_found"


def test_only_get_and_head_pass(world: World, running: dict[str, Any]) -> None:
    alice = world.browser("alice")
    csrf = {"X-CSRF-Token": alice.cookies["rsparkhub_csrf"]}
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = alice.request(method, f"{UI}/jobs/job/kill/?id=0", headers=csrf)
        assert r.status_code == 405, (method, r.status_code)
    page = world.token("alice").get(f"{UI}/stages/").text
    assert "kill" not in page.lower()  # spark.ui.killEnabled = false


def test_spark_links_work_under_the_hub_path(world: World, running: dict[str, Any]) -> None:
    admin = world.token("alice")  # the UI's own user
    r = admin.get(f"{UI}/")
    assert r.status_code == 302 and r.headers["location"] == f"{UI}/jobs/"
    r = admin.get(UI)
    assert r.status_code == 307 and r.headers["location"] == "alice/"

    jobs = admin.get(f"{UI}/jobs/")
    assert jobs.status_code == 200 and "text/html" in jobs.headers["content-type"]
    links = set(re.findall(r'(?:href|src)="(/[^"]*)"', jobs.text))
    assert links and all(link.startswith(f"{UI}/") for link in links), links
    assets = {link for link in links if "/static/" in link}
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in sorted(assets):
        r = admin.get(asset)
        assert r.status_code == 200, asset
        kind = "javascript" if asset.endswith(".js") else "css" if asset.endswith(".css") else ""
        assert kind in r.headers["content-type"], (asset, r.headers["content-type"])
    pages = {html.unescape(link) for link in links if not link.startswith(f"{UI}/static/")}
    for page in sorted(pages):  # every tab Spark links to: jobs, stages, storage, SQL, …
        r = admin.get(page, follow_redirects=True)  # the logo links to / → /jobs/
        assert r.status_code == 200 and r.url.path.startswith(f"{UI}/"), (page, r.url)

    # a stage page, found through the REST API like Spark's own pages find it
    stage = running["stages"][0]
    r = admin.get(f"{UI}/stages/stage/?id={stage['stageId']}&attempt={stage['attemptId']}")
    assert r.status_code == 200 and f"Details for Stage {stage['stageId']}" in r.text
    r = admin.get(f"{UI}/api/v1/applications/{running['app_id']}/jobs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json() and r.json()[0]["status"] == "SUCCEEDED"


def test_proxy_headers(world: World, running: dict[str, Any]) -> None:
    admin = world.browser("alice")
    for path in (f"{UI}/jobs/", f"{UI}/static/webui.css", f"{UI}/api/v1/applications"):
        r = admin.get(path)
        assert r.status_code == 200
        assert r.headers["content-security-policy"] == UI_CSP
        assert r.headers["x-frame-options"] == "SAMEORIGIN"
        assert r.headers["cache-control"] == "private, no-cache"
        assert "set-cookie" not in r.headers
    # the hub's own pages keep their stricter rules
    assert admin.get("/api/me").headers["x-frame-options"] == "DENY"


def test_header_filters() -> None:
    """What crosses the proxy: the hub's credentials never reach Spark; Spark's cookies and
    hop-by-hop headers never reach the browser; redirects stay under the hub path."""
    sent = forward_request_headers(
        [
            ("Cookie", "rsparkhub_session=rss_x; rsparkhub_csrf=y"),
            ("Authorization", "Bearer rsh_secret"),
            ("X-CSRF-Token", "y"),
            ("Host", "hub.example"),
            ("Connection", "keep-alive"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Accept", "text/html"),
            ("Accept-Encoding", "gzip"),
            ("If-None-Match", '"abc"'),
        ]
    )
    assert sent == {"accept": "text/html", "accept-encoding": "gzip", "if-none-match": '"abc"'}
    got = forward_response_headers(
        [
            ("Content-Type", "text/html"),
            ("Set-Cookie", "JSESSIONID=1"),
            ("Connection", "close"),
            ("Transfer-Encoding", "chunked"),
            ("Keep-Alive", "timeout=5"),
            ("X-Frame-Options", "DENY"),
            ("Content-Security-Policy", "default-src *"),
            ("Location", "http://127.0.0.1:4040/jobs/?id=1"),
        ],
        "http://127.0.0.1:4040",
        "/spark-ui/alice",
    )
    assert got["location"] == "/spark-ui/alice/jobs/?id=1"
    assert got["content-security-policy"] == UI_CSP and got["x-frame-options"] == "SAMEORIGIN"
    for dropped in ("set-cookie", "connection", "transfer-encoding", "keep-alive"):
        assert dropped not in got
    mount, target = "/spark-ui/alice", "http://127.0.0.1:4040"
    assert map_location("/spark-ui/alice/stages/", target, mount) == "/spark-ui/alice/stages/"
    assert map_location("/jobs/", target, mount) == "/spark-ui/alice/jobs/"
    assert map_location("https://evil.example/x", target, mount) == "/spark-ui/alice/"
    assert map_location("jobs/", target, mount) == "jobs/"


def test_api_spark_describes_spark_for_the_caller(world: World, running: dict[str, Any]) -> None:
    alice = world.token("alice").get("/api/spark").json()
    assert alice["mode"] == "embedded" and alice["state"] == "running"
    assert alice["ui_url"] == f"{UI}/" and alice["database"] == "u_alice"
    assert world.token("alice").get(alice["ui_url"]).status_code in (200, 302)
    assert alice["remote"].startswith("sc://localhost:") and alice["remote"].endswith(
        ";user_id=alice"
    )
    assert "session_id" not in str(alice) and "your own" in alice["detail"]
    assert "token" not in str(alice)  # the server's token is only in the sessions' SPARK_REMOTE
    # bob's own server is not running (and alice's is none of his business)
    bob = world.token("bob").get("/api/spark").json()
    assert bob["state"] == "down" and bob["ui_url"] is None and bob["database"] == "u_bob"
    assert alice["remote"].split("/;")[0] not in str(bob)
    admin = world.token("root").get("/api/spark").json()
    assert admin["ui_url"] is None and admin["database"] == "u_root"
    anon = httpx.get(f"{world.hub.url}/api/spark")
    assert anon.status_code == 401


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def test_the_servers_ports_listen_on_loopback_only(world: World, running: dict[str, Any]) -> None:
    """Inside its sandbox the server binds 127.0.0.1; on the host only its two forwarded
    ports (gRPC, UI) listen, on loopback: no other machine reaches them."""
    port = int(world.token("alice").get("/api/spark").json()["remote"].split(":")[2].split("/")[0])
    uid = str(world.token("alice").get("/api/me").json()["id"])
    pids = set(spark_server_pids(world.hub, uid))
    listening = [
        (c.pid, c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="inet")  # the host's network namespace
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    ]
    ports = {p for _, _, p in listening}
    assert port in ports, listening
    assert len(ports) == 2, listening  # gRPC and the UI: the driver, py4j … stay inside
    assert all(_loopback(ip) for _, ip, _ in listening), listening


def test_the_ui_answers_only_what_the_hub_signs(world: World, running: dict[str, Any]) -> None:
    """Straight to the UI's port on the host's loopback (any local process could try):
    no Authorization, a JWS signed with another key, and an expired one with the right key
    are all refused by Spark's JWSFilter; a fresh one signed with the key the hub derives
    for alice's server gets in."""
    alice = world.token("alice")
    grpc = int(alice.get("/api/spark").json()["remote"].split(":")[2].split("/")[0])
    uid = str(alice.get("/api/me").json()["id"])
    pids = set(spark_server_pids(world.hub, uid))
    ui_ports = {
        c.laddr.port
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids and c.laddr.port != grpc
    }
    assert len(ui_ports) == 1, ui_ports
    url = f"http://127.0.0.1:{ui_ports.pop()}/api/v1/applications"
    secret = (world.hub.data_dir / "spark" / "secret").read_text().strip().encode()
    key = ui_key(secret, uid)
    other = base64.urlsafe_b64encode(b"k" * 32).decode()
    cases = {
        "none": {},
        "another key": {"Authorization": ui_bearer(other)},
        "expired": {"Authorization": ui_bearer(key, now=time.time() - 3600)},
        "bob's key": {"Authorization": ui_bearer(ui_key(secret, "bob"))},
    }
    for what, headers in cases.items():
        r = httpx.get(url, headers=headers, timeout=30, trust_env=False)
        assert r.status_code == 403, (what, r.status_code, r.text[:200])
    r = httpx.get(url, headers={"Authorization": ui_bearer(key)}, timeout=30, trust_env=False)
    assert r.status_code == 200 and r.json()[0]["id"] == running["app_id"], r.text[:300]
