"""Accounts over HTTP, against a real hub process: the password policy (common passwords,
minimum strength), the login rate limit per account and per address (429
``too_many_attempts`` with Retry-After), one-time links for new users and password resets,
each user's sessions for admins, and who has access to a workspace. The browser side of
the same features is tests/test_web_accounts.py."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import PASSWORD, HubProcess


def err(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, (r.status_code, r.text)
    body: dict[str, object] = r.json()["error"]
    assert body["code"] == code, r.text
    assert isinstance(body["message"], str) and body["message"].endswith("."), body
    return body


def browser_login(hub: HubProcess, link: str) -> httpx.Client:
    """Open a one-time link as a browser would: a login cookie, and the CSRF header set."""
    c = httpx.Client(base_url=hub.url, timeout=60)
    r = c.get(link, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    c.headers["X-CSRF-Token"] = c.cookies["rsparkhub_csrf"]
    return c


@pytest.fixture
def admin(shared_hub: HubProcess) -> Iterator[httpx.Client]:
    with shared_hub.client(shared_hub.make_user(f"adm{time.monotonic_ns() % 10**8}", True)) as c:
        yield c


def test_a_new_user_opens_the_link_and_must_choose_a_good_password(
    shared_hub: HubProcess, admin: httpx.Client
) -> None:
    r = admin.post("/api/users", json={"name": "carol"})
    assert r.status_code == 201, r.text
    link = r.json()["login_link"]
    assert re.fullmatch(re.escape(shared_hub.url) + r"/login/rso_\S+", link), link
    assert r.json()["has_password"] is False

    carol = browser_login(shared_hub, link)
    assert carol.get("/api/me").json()["has_password"] is False
    # A second use of the link: refused; a browser is sent to the login page to read why.
    err(httpx.get(link), 401, "invalid_login_link")
    r = httpx.get(link, headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/#/link-invalid"

    for password, reason, says in [
        ("short", "too_short", "at least 8"),
        ("password1", "common", "20,000 most common"),
        ("Dragon2024!", "common", "20,000 most common"),  # 'dragon' with digits and '!'
        ("carol-rules-ok", "contains_name", "user name"),
        ("abababababab", "too_simple", "at least 5 different characters"),
        ("abcdefghijk", "too_simple", "'abcdefgh'"),
    ]:
        body = err(
            carol.post("/api/me/password", json={"new_password": password}), 400, "weak_password"
        )
        assert body["reason"] == reason and says in str(body["message"]), (password, body)
        assert body["min_length"] == 8
    assert carol.get("/api/me").json()["has_password"] is False

    r = carol.post("/api/me/password", json={"new_password": "lamp-orbit-tulip-42"})
    assert r.status_code == 200, r.text
    assert carol.get("/api/me").json()["has_password"] is True
    # Changing it now needs the current one, and the new one follows the same rules.
    err(
        carol.post("/api/me/password", json={"new_password": "another-fine-phrase"}),
        403,
        "wrong_password",
    )
    err(
        carol.post(
            "/api/me/password",
            json={"old_password": "lamp-orbit-tulip-42", "new_password": "qwerty123"},
        ),
        400,
        "weak_password",
    )
    r = carol.post(
        "/api/me/password",
        json={"old_password": "lamp-orbit-tulip-42", "new_password": "another-fine-phrase"},
    )
    assert r.status_code == 200, r.text
    r = httpx.post(
        f"{shared_hub.url}/api/login", json={"name": "carol", "password": "another-fine-phrase"}
    )
    assert r.status_code == 200, r.text
    # An admin setting a password directly is held to the same rules.
    body = err(admin.patch("/api/users/carol", json={"password": "letmein1"}), 400, "weak_password")
    assert body["reason"] == "common"
    err(
        admin.post("/api/users", json={"name": "dan", "password": "12345678"}), 400, "weak_password"
    )


def test_admin_resets_a_password_and_sees_a_users_sessions(
    shared_hub: HubProcess, admin: httpx.Client
) -> None:
    shared_hub.make_user("erin")
    old_browser = httpx.Client(base_url=shared_hub.url, timeout=60)
    assert (
        old_browser.post("/api/login", json={"name": "erin", "password": PASSWORD}).status_code
        == 200
    )

    r = admin.post("/api/users/erin/login-link")
    assert r.status_code == 200, r.text
    assert r.json()["has_password"] is False and r.json()["name"] == "erin"
    link = r.json()["login_link"]
    # The old password and the old browser session are gone; the link logs in once.
    err(
        httpx.post(f"{shared_hub.url}/api/login", json={"name": "erin", "password": PASSWORD}),
        401,
        "login_failed",
    )
    err(old_browser.get("/api/me"), 401, "unauthorized")
    erin = browser_login(shared_hub, link)
    assert (
        erin.post("/api/me/password", json={"new_password": "quiet-river-stone"}).status_code == 200
    )
    # A second reset ends the link of the first, unused or not.
    first = admin.post("/api/users/erin/login-link").json()["login_link"]
    second = admin.post("/api/users/erin/login-link").json()["login_link"]
    err(httpx.get(first), 401, "invalid_login_link")
    browser_login(shared_hub, second).close()
    # The operator's way (rsparkhub login-link) is the same reset.
    # (The CLI does not know the test hub's port: only the link's path is used.)
    third = (
        shared_hub.url + "/login/" + shared_hub.cli("login-link", "erin").strip().rsplit("/", 1)[1]
    )
    err(
        httpx.post(
            f"{shared_hub.url}/api/login", json={"name": "erin", "password": "quiet-river-stone"}
        ),
        401,
        "login_failed",
    )
    assert browser_login(shared_hub, third).get("/api/me").json()["has_password"] is False

    me = admin.get("/api/me").json()["name"]
    err(admin.post(f"/api/users/{me}/login-link"), 400, "cannot_reset_self")
    err(admin.post("/api/users/nobody/login-link"), 404, "not_found")
    err(admin.get("/api/users/nobody/sessions"), 404, "not_found")
    err(
        admin.patch("/api/users/erin", json={"is_admin": True, "shoe_size": 9}),
        422,
        "invalid_request",
    )

    # Sessions, newest first, with their workspace and project.
    c = shared_hub.client(shared_hub.make_user("frank"))
    pid = c.post("/api/projects", json={"name": "fp"}).json()["id"]
    wid = c.post(f"/api/projects/{pid}/workspaces", json={"name": "fw"}).json()["id"]
    assert admin.get("/api/users/frank/sessions").json() == []
    c.post(f"/api/workspaces/{wid}/session").raise_for_status()
    try:
        rows = admin.get("/api/users/frank/sessions").json()
        assert [(s["workspace"], s["project"], s["owner"]) for s in rows] == [("fw", "fp", "frank")]
        assert rows[0]["state"] in ("starting", "running")
    finally:
        c.delete(f"/api/workspaces/{wid}/session").raise_for_status()
    assert admin.get("/api/users/frank/sessions").json()[0]["state"] == "stopped"


def test_members_see_who_has_access_and_owners_share(shared_hub: HubProcess) -> None:
    gina = shared_hub.client(shared_hub.make_user("gina"))
    shared_hub.make_user("hal")
    ivy = shared_hub.client(shared_hub.make_user("ivy"))
    pid = gina.post("/api/projects", json={"name": "gp"}).json()["id"]
    ws = (
        "/api/workspaces/"
        + gina.post(f"/api/projects/{pid}/workspaces", json={"name": "gw"}).json()["id"]
    )

    body = err(
        gina.put(f"{ws}/members", json={"user": "nobody", "role": "viewer"}), 404, "user_not_found"
    )
    assert "nobody" in str(body["message"])
    err(gina.put(f"{ws}/members", json={"user": "gina", "role": "viewer"}), 400, "project_owner")
    err(gina.put(f"{ws}/members", json={"user": "hal", "role": "boss"}), 422, "invalid_request")
    assert gina.put(f"{ws}/members", json={"user": "ivy", "role": "owner"}).status_code == 200
    # ivy, an owner of the workspace, shares it further and sees everyone.
    assert ivy.put(f"{ws}/members", json={"user": "hal", "role": "viewer"}).status_code == 200
    assert [
        (m["user"], m["role"], m["project_owner"]) for m in ivy.get(f"{ws}/members").json()
    ] == [
        ("gina", "owner", True),
        ("hal", "viewer", False),
        ("ivy", "owner", False),
    ]
    assert ivy.delete(f"{ws}/members/hal").status_code == 200
    assert [m["user"] for m in gina.get(f"{ws}/members").json()] == ["gina", "ivy"]


def test_login_is_rate_limited_per_account_and_per_address(tmp_path: Path) -> None:
    hub = HubProcess(
        tmp_path / "data",
        {
            "RSPARKHUB_LOGIN_ATTEMPTS_PER_ACCOUNT": "3",
            "RSPARKHUB_LOGIN_ATTEMPTS_PER_ADDRESS": "5",
            "RSPARKHUB_LOGIN_ATTEMPTS_WINDOW_S": "4",
        },
    ).start()
    try:
        hub.make_user("jo")
        url = f"{hub.url}/api/login"

        def login(name: str, password: str) -> httpx.Response:
            return httpx.post(url, json={"name": name, "password": password}, timeout=60)

        for _ in range(3):
            err(login("jo", "not-the-password"), 401, "login_failed")
        r = login("jo", PASSWORD)  # even the right password waits now
        body = err(r, 429, "too_many_attempts")
        wait = int(r.headers["retry-after"])
        assert 1 <= wait <= 4 and body["retry_after"] == wait
        assert f"Try again in {wait} seconds" in str(body["message"])
        assert "for this account" in str(body["message"])
        # An unknown name gets the same answers: nothing tells which names exist.
        for _ in range(2):
            err(login("nobody", "guess-one"), 401, "login_failed")
        # The address has now failed 5 times: every account is refused from here.
        r = login("someone-else", "guess-two")
        body = err(r, 429, "too_many_attempts")
        assert "from your network address" in str(body["message"])

        time.sleep(int(r.headers["retry-after"]) + 0.2)
        r = login("jo", PASSWORD)
        assert r.status_code == 200, r.text
        # A success forgives the account's failures.
        for _ in range(2):
            err(login("jo", "not-the-password"), 401, "login_failed")
        assert login("jo", PASSWORD).status_code == 200
        err(login("jo", "not-the-password"), 401, "login_failed")
    finally:
        hub.close()
