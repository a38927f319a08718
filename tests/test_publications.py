"""Publishing (hub/api/publications.py) over HTTP with a real hub: the three audiences,
republishing keeps the URL and link, revoking or changing the audience kills the old link,
the page names the file version and times, a plot from a real R session, and who may do
what. The browser side (publish from the IDE, the sandbox in Chromium) is in
tests/test_web_publish.py."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from rsparkhub.client import HubClient

from conftest import PASSWORD, HubProcess

REPORT_V1 = "<!doctype html><html><body><h1>Report one</h1></body></html>"
REPORT_V2 = "<!doctype html><html><body><h1>Report two</h1></body></html>"


class Team:
    """owner (owns the workspace), editor and viewer (members), outsider (a hub user who is
    not a member), anon (no credentials)."""

    def __init__(self, hub: HubProcess) -> None:
        tag = uuid.uuid4().hex[:6]
        self.hub = hub
        self.names = {k: f"{k}-{tag}" for k in ("owner", "editor", "viewer", "outsider")}
        self.tokens = {k: hub.make_user(n) for k, n in self.names.items()}
        self.c = {k: hub.client(t) for k, t in self.tokens.items()}
        self.anon = httpx.Client(base_url=hub.url, timeout=60)
        o = self.c["owner"]
        pid = o.post("/api/projects", json={"name": f"pub-{tag}"}).raise_for_status().json()["id"]
        self.ws = (
            o.post(f"/api/projects/{pid}/workspaces", json={"name": "reports"})
            .raise_for_status()
            .json()["id"]
        )
        for role in ("editor", "viewer"):
            o.put(
                f"/api/workspaces/{self.ws}/members",
                json={"user": self.names[role], "role": role},
            ).raise_for_status()
        self.base = f"/api/workspaces/{self.ws}"
        self.put("report.Rmd", "---\ntitle: r\n---\n# hi\n")
        self.put("report.html", REPORT_V1)

    def put(self, path: str, content: str) -> None:
        self.c["owner"].post(
            f"{self.base}/upload", files={"files": (path, content.encode())}
        ).raise_for_status()

    def publish(self, who: str = "owner", **body: object) -> httpx.Response:
        return self.c[who].post(
            f"{self.base}/publications",
            json={"kind": "document", "source": "report.html", **body},
        )


@pytest.fixture(scope="module")
def team(shared_hub: HubProcess) -> Team:
    return Team(shared_hub)


def _error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"].endswith("."), err


def test_members_audience(team: Team) -> None:
    r = team.publish(audience="members")
    assert r.status_code in (200, 201), r.text
    pub = r.json()
    assert pub["url"] == f"/api/pub/{pub['id']}" and pub["audience"] == "members"
    assert pub["file_version"] == 1 and pub["origin_path"] == "report.Rmd"
    assert pub["origin_version"] == 1 and pub["published_by"] == team.names["owner"]
    for who in ("owner", "editor", "viewer"):
        page = team.c[who].get(pub["url"])
        assert page.status_code == 200, (who, page.text)
        content = team.c[who].get(pub["url"] + "/content")
        assert content.text == REPORT_V1
    _error(team.c["outsider"].get(pub["url"]), 404, "not_found")
    _error(team.c["outsider"].get(pub["url"] + "/content"), 404, "not_found")
    _error(team.anon.get(pub["url"]), 401, "unauthorized")
    _error(team.anon.get(pub["url"] + "/content"), 401, "unauthorized")
    assert pub["id"] not in team.c["outsider"].get("/api/publications").text
    # each member's list says their role in the workspace and its name
    for who in ("owner", "editor", "viewer"):
        mine = {p["id"]: p for p in team.c[who].get("/api/publications").json()}[pub["id"]]
        assert (mine["role"], mine["workspace_name"]) == (who, "reports"), (who, mine)


def test_hub_audience(team: Team) -> None:
    pub = team.publish(audience="hub").raise_for_status().json()
    assert team.c["outsider"].get(pub["url"] + "/content").text == REPORT_V1
    seen = {p["id"]: p for p in team.c["outsider"].get("/api/publications").json()}
    assert seen[pub["id"]]["url"] == pub["url"]
    # a non-member learns neither a role nor the workspace's name
    assert (seen[pub["id"]]["role"], seen[pub["id"]]["workspace_name"]) == (None, None)
    _error(team.anon.get(pub["url"]), 401, "unauthorized")


def test_link_audience_republish_and_revoke(team: Team) -> None:
    pub = team.publish(audience="link").raise_for_status().json()
    url = pub["url"]
    assert "?token=" in url
    page = team.anon.get(url)
    assert page.status_code == 200, page.text
    token = url.split("?token=")[1]
    assert team.anon.get(f"/api/pub/{pub['id']}/content", params={"token": token}).text == REPORT_V1
    # without the token, or with a wrong one: nothing, for a stranger as for a hub user
    _error(team.anon.get(f"/api/pub/{pub['id']}"), 404, "not_found")
    _error(team.anon.get(f"/api/pub/{pub['id']}", params={"token": token + "x"}), 404, "not_found")
    _error(team.c["outsider"].get(f"/api/pub/{pub['id']}"), 404, "not_found")
    # a link publication is not listed to non-members
    assert pub["id"] not in team.c["outsider"].get("/api/publications").text

    # republish after a new render: same id, same link, new content and version
    team.put("report.html", REPORT_V2)
    again = team.publish("editor", audience="link")
    assert again.status_code == 200, again.text
    assert again.json()["url"] == url and again.json()["id"] == pub["id"]
    assert again.json()["file_version"] == 2
    assert again.json()["published_by"] == team.names["editor"]
    assert team.anon.get(f"/api/pub/{pub['id']}/content", params={"token": token}).text == REPORT_V2
    meta = team.anon.get(url).text
    assert "report.html version 2" in meta and "report.Rmd version 1" in meta
    assert again.json()["rendered_at"][:16] in meta and team.names["editor"] in meta

    # a new link: the old one dies
    r = team.c["owner"].patch(
        f"{team.base}/publications/{pub['id']}", json={"audience": "link", "new_link": True}
    )
    new_url = r.raise_for_status().json()["url"]
    assert new_url != url
    _error(team.anon.get(url), 404, "not_found")
    assert team.anon.get(new_url).status_code == 200
    # audience changed to members: the link dies; back to link: yet another token
    r = team.c["owner"].patch(f"{team.base}/publications/{pub['id']}", json={"audience": "members"})
    assert r.raise_for_status().json()["url"] == f"/api/pub/{pub['id']}"
    _error(team.anon.get(new_url), 401, "unauthorized")
    r = team.c["owner"].patch(f"{team.base}/publications/{pub['id']}", json={"audience": "link"})
    third = r.raise_for_status().json()["url"]
    assert third not in (url, new_url)
    assert team.anon.get(third).status_code == 200

    # unpublish: the URL is gone for everybody
    assert team.c["editor"].delete(f"{team.base}/publications/{pub['id']}").status_code == 200
    _error(team.anon.get(third), 404, "not_found")
    _error(team.c["owner"].get(f"/api/pub/{pub['id']}"), 404, "not_found")
    assert team.c["owner"].get(f"{team.base}/publications").json() == []


def test_published_html_is_sandboxed(team: Team) -> None:
    pub = team.publish(audience="members").raise_for_status().json()
    r = team.c["owner"].get(pub["url"] + "/content")
    csp = r.headers["content-security-policy"]
    assert csp.startswith("sandbox allow-scripts") and "allow-same-origin" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    page = team.c["owner"].get(pub["url"])
    assert 'sandbox="allow-scripts allow-popups"' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"


def test_who_may_publish(team: Team) -> None:
    _error(team.publish("viewer"), 403, "forbidden")
    _error(team.publish("outsider"), 404, "not_found")
    _error(team.anon.post(f"{team.base}/publications", json={}), 401, "unauthorized")
    _error(team.publish(source="report.Rmd"), 415, "not_publishable")
    _error(team.publish(source="missing.html"), 404, "not_found")
    _error(team.publish(kind="plot", source=uuid.uuid4().hex), 404, "not_found")
    _error(team.publish(audience="world"), 422, "invalid_request")
    pub = team.publish().raise_for_status().json()
    listed = team.c["viewer"].get(f"{team.base}/publications").json()
    assert pub["id"] in [p["id"] for p in listed]
    for who in ("viewer",):
        path = f"{team.base}/publications/{pub['id']}"
        _error(team.c[who].patch(path, json={"audience": "hub"}), 403, "forbidden")
        _error(team.c[who].delete(path), 403, "forbidden")
    path = f"{team.base}/publications/{pub['id']}"
    _error(team.c["outsider"].delete(path), 404, "not_found")
    _error(team.c["owner"].delete(f"{team.base}/publications/{uuid.uuid4().hex}"), 404, "not_found")


def test_publish_a_plot(team: Team) -> None:
    async def draw() -> None:
        async with HubClient(team.hub.url, team.tokens["owner"]) as c, c.attach(team.ws) as s:
            r = await s.run("plot(1:10)", language="r")
            assert len(r.plots) == 1

    asyncio.run(draw())
    plots = team.c["owner"].get(f"{team.base}/plots").json()
    pub = team.publish(kind="plot", source=plots[-1]["id"], audience="link").raise_for_status()
    url = pub.json()["url"]
    assert pub.json()["kind"] == "plot" and pub.json()["file_version"] is None
    page = team.anon.get(url)
    assert page.status_code == 200 and "Plotted" in page.text
    token = url.split("?token=")[1]
    img = team.anon.get(f"/api/pub/{pub.json()['id']}/content", params={"token": token})
    assert img.content[:4] == b"\x89PNG"
    again = team.publish(kind="plot", source=plots[-1]["id"], audience="link")
    assert again.json()["url"] == url


def test_login_cookie_sees_hub_publication(team: Team) -> None:
    pub = team.publish(audience="hub").raise_for_status().json()
    browser = httpx.Client(base_url=team.hub.url, timeout=60)
    r = browser.post("/api/login", json={"name": team.names["outsider"], "password": PASSWORD})
    assert r.status_code == 200
    assert browser.get(pub["url"]).status_code == 200
