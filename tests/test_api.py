"""The hub's HTTP API against a real ``rsparkhub serve``: login and CSRF, API tokens, the
one-time login link, projects/workspaces/files with versions, input validation, limits,
the error body format, the OpenAPI document and security headers.

Storage-heavy tests use ``any_db_hub`` so that they run on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import re
import sqlite3
import time
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import PASSWORD, HubProcess, StartHub

# --------------------------------------------------------------------------- helpers


def err(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert an error response: status, ``error.code`` and a non-empty ``error.message``."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"].strip(), body
    return body["error"]  # type: ignore[no-any-return]


def set_cookies(r: httpx.Response) -> dict[str, str]:
    """The response's Set-Cookie headers, keyed by cookie name."""
    out = {}
    for raw in r.headers.get_list("set-cookie"):
        out[raw.split("=", 1)[0]] = raw
    return out


def login(hub: HubProcess, name: str, password: str = PASSWORD) -> httpx.Client:
    """A cookie-authenticated client (as a browser would be), sending the CSRF header."""
    c = httpx.Client(base_url=hub.url, timeout=60)
    r = c.post("/api/login", json={"name": name, "password": password})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = c.cookies["rsparkhub_csrf"]
    return c


def new_workspace(c: httpx.Client, project: str = "proj", workspace: str = "ws") -> tuple[str, str]:
    r = c.post("/api/projects", json={"name": project})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = c.post(f"/api/projects/{pid}/workspaces", json={"name": workspace})
    assert r.status_code == 201, r.text
    return pid, r.json()["id"]


def make_zip(files: dict[str, bytes], deflate: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, data in (deflate or {}).items():
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}


# --------------------------------------------------------------------------- login, CSRF


def test_password_login_cookies_csrf_and_logout(any_db_hub: HubProcess) -> None:
    hub = any_db_hub
    token = hub.make_user("carol")

    anon = httpx.Client(base_url=hub.url, timeout=60)
    err(
        anon.post("/api/login", json={"name": "carol", "password": "wrong-password"}),
        401,
        "login_failed",
    )
    err(anon.post("/api/login", json={"name": "nobody", "password": PASSWORD}), 401, "login_failed")
    assert "rsparkhub_session" not in anon.cookies

    r = anon.post("/api/login", json={"name": "carol", "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["name"] == "carol"
    cookies = set_cookies(r)
    session = cookies["rsparkhub_session"].lower()
    assert "httponly" in session and "samesite=lax" in session and "path=/" in session
    csrf = cookies["rsparkhub_csrf"].lower()
    assert "samesite=strict" in csrf
    assert "httponly" not in csrf  # the page's script must be able to read it
    assert anon.cookies["rsparkhub_csrf"]

    # Reads work with the cookie alone.
    me = anon.get("/api/me")
    assert me.status_code == 200 and me.json()["name"] == "carol"

    # A cookie-authenticated write without (or with a wrong) CSRF header is refused …
    err(anon.post("/api/projects", json={"name": "p1"}), 403, "csrf_failed")
    err(
        anon.post("/api/projects", json={"name": "p1"}, headers={"X-CSRF-Token": "forged"}),
        403,
        "csrf_failed",
    )
    assert anon.get("/api/projects").json() == []
    # … and accepted with it.
    good = {"X-CSRF-Token": anon.cookies["rsparkhub_csrf"]}
    r = anon.post("/api/projects", json={"name": "p1"}, headers=good)
    assert r.status_code == 201, r.text
    # Token-authenticated writes need no CSRF header.
    assert hub.client(token).post("/api/projects", json={"name": "p2"}).status_code == 201

    # Logout needs CSRF too, then revokes the login session server-side.
    session_secret = anon.cookies["rsparkhub_session"]
    err(anon.post("/api/logout"), 403, "csrf_failed")
    r = anon.post("/api/logout", headers=good)
    assert r.status_code == 200 and r.json() == {"ok": True}
    deleted = set_cookies(r)
    assert (
        'rsparkhub_session=""' in deleted["rsparkhub_session"]
        or "max-age=0" in deleted["rsparkhub_session"].lower()
    )
    replay = httpx.Client(
        base_url=hub.url, cookies={"rsparkhub_session": session_secret}, timeout=60
    )
    err(replay.get("/api/me"), 401, "unauthorized")


def test_disabled_user_cannot_log_in_and_loses_token_and_cookie(any_db_hub: HubProcess) -> None:
    hub = any_db_hub
    token = hub.make_user("dave")
    browser = login(hub, "dave")
    assert hub.client(token).get("/api/me").json()["disabled"] is False

    hub.cli("user", "disable", "dave")

    err(
        httpx.post(f"{hub.url}/api/login", json={"name": "dave", "password": PASSWORD}),
        401,
        "login_failed",
    )
    err(hub.client(token).get("/api/me"), 401, "invalid_token")
    err(browser.get("/api/me"), 401, "unauthorized")


def test_the_name_code_writes_files_under_is_reserved(any_db_hub: HubProcess) -> None:
    # File histories record versions written by code as by "session": no person may be
    # called that, or their saves would read as code's.
    admin = any_db_hub.client(any_db_hub.make_user("root2", admin=True))
    r = admin.post("/api/users", json={"name": "session", "password": PASSWORD})
    assert "reserved" in err(r, 400, "reserved_name")["message"]
    assert admin.post("/api/users", json={"name": "sessions", "password": PASSWORD}).is_success


# --------------------------------------------------------------------------- API tokens


def test_api_tokens_create_list_revoke_expire(any_db_hub: HubProcess) -> None:
    hub = any_db_hub
    cli_token = hub.make_user("erin")
    c = hub.client(cli_token)

    r = c.post("/api/tokens", json={"name": "laptop", "expires_in_days": 2})
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["token"]
    assert secret.startswith("rsh_") and len(secret) > 40
    assert created["name"] == "laptop" and created["revoked"] is False
    assert created["expires_at"] is not None

    # The new token works.
    assert hub.client(secret).get("/api/me").json()["name"] == "erin"

    # The list shows both tokens, never a secret.
    listed = c.get("/api/tokens").json()
    assert {t["name"] for t in listed} == {"cli", "laptop"}
    assert all("token" not in t for t in listed)
    assert secret not in str(listed) and cli_token not in str(listed)

    # Stored hashed, not in clear (checked in the SQLite file).
    if not hub.env.get("RSPARKHUB_DATABASE_URL"):
        con = sqlite3.connect(hub.data_dir / "rsparkhub.db")
        try:
            rows = con.execute("SELECT * FROM api_tokens").fetchall()
        finally:
            con.close()
        dump = repr(rows)
        assert secret not in dump and cli_token not in dump
        assert secret.split("_", 1)[1] not in dump
        assert hashlib.sha256(secret.encode()).hexdigest() in dump

    # Bad lifetimes are refused.
    err(c.post("/api/tokens", json={"name": "x", "expires_in_days": 0}), 422, "invalid_request")
    err(c.post("/api/tokens", json={"name": "x", "expires_in_days": -1}), 422, "invalid_request")

    # Revoke: the token stops working at once, the list says so.
    r = c.delete(f"/api/tokens/{created['id']}")
    assert r.status_code == 200 and r.json() == {"ok": True}
    err(hub.client(secret).get("/api/me"), 401, "invalid_token")
    laptop = next(t for t in c.get("/api/tokens").json() if t["name"] == "laptop")
    assert laptop["revoked"] is True
    err(c.delete("/api/tokens/no-such-token"), 404, "not_found")

    # An expired token is refused (lifetime 0.00001 days = 0.86 s).
    short = hub.cli("token", "create", "erin", "--expires-in", "0.00001").strip()
    time.sleep(1.2)
    err(hub.client(short).get("/api/me"), 401, "invalid_token")
    # A garbage token is refused the same way, and the first token still works.
    err(hub.client("rsh_garbage").get("/api/me"), 401, "invalid_token")
    assert c.get("/api/me").status_code == 200


# --------------------------------------------------------------------------- one-time link


def test_first_start_one_time_login_link(any_db_hub: HubProcess) -> None:
    hub = any_db_hub
    url = hub.login_link()
    assert re.fullmatch(re.escape(hub.url) + r"/login/rso_\S+", url), url
    assert "admin" in hub.first_start_output and "first-login-link" in hub.first_start_output
    # The hub's output is not a terminal (it is a log): the secret is never in it.
    assert url.rsplit("/", 1)[1] not in hub.first_start_output
    assert (hub.data_dir / "first-login-link").stat().st_mode & 0o777 == 0o600

    browser = httpx.Client(timeout=60)
    r = browser.get(url, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/"
    assert "httponly" in set_cookies(r)["rsparkhub_session"].lower()
    me = browser.get(f"{hub.url}/api/me")
    assert me.status_code == 200, me.text
    assert me.json()["name"] == "admin" and me.json()["is_admin"] is True
    assert me.json()["has_password"] is False  # no default password, ever

    # Second use: refused, and sets no cookie.
    other = httpx.Client(timeout=60)
    r = other.get(url, follow_redirects=False)
    err(r, 401, "invalid_login_link")
    assert "rsparkhub_session" not in other.cookies

    # A restart does not print (or create) a new link.
    hub.restart()
    assert hub.login_link() == url
    assert "/login/rso_" not in hub.log_path.read_text()
    assert "first-login-link" not in hub.log_path.read_text().split("Application startup")[-1]


# --------------------------------------------------------------------------- projects, files


def test_projects_and_workspaces_crud(any_db_hub: HubProcess) -> None:
    hub = any_db_hub
    c = hub.client(hub.make_user("fay"))

    pid, wid = new_workspace(c, "Analysis", "main")
    err(c.post("/api/projects", json={"name": "Analysis"}), 409, "project_exists")
    err(c.post(f"/api/projects/{pid}/workspaces", json={"name": "main"}), 409, "workspace_exists")
    err(c.post("/api/projects", json={"name": "a/b"}), 400, "invalid_name")
    err(c.post("/api/projects", json={"name": "   "}), 400, "invalid_name")

    r = c.patch(f"/api/projects/{pid}", json={"name": "Analysis 2"})
    assert r.status_code == 200 and r.json()["name"] == "Analysis 2"
    assert c.get(f"/api/projects/{pid}").json()["name"] == "Analysis 2"
    assert [p["name"] for p in c.get("/api/projects").json()] == ["Analysis 2"]

    r = c.patch(f"/api/workspaces/{wid}", json={"name": "renamed"})
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    r = c.post(f"/api/projects/{pid}/workspaces", json={"name": "second"})
    wid2 = r.json()["id"]
    listed = c.get(f"/api/projects/{pid}/workspaces").json()
    assert [(w["name"], w["role"]) for w in listed] == [("renamed", "owner"), ("second", "owner")]
    everywhere = c.get("/api/workspaces").json()
    assert {(w["id"], w["project"]) for w in everywhere} == {
        (wid, "Analysis 2"),
        (wid2, "Analysis 2"),
    }
    assert c.get(f"/api/workspaces/{wid}").json()["project_id"] == pid

    assert c.delete(f"/api/workspaces/{wid2}").json() == {"ok": True}
    err(c.get(f"/api/workspaces/{wid2}"), 404, "not_found")
    r = c.put(f"/api/workspaces/{wid}/text/a.R", json={"content": "x <- 1\n", "base_version": 0})
    assert r.status_code == 200, r.text

    assert c.delete(f"/api/projects/{pid}").json() == {"ok": True}
    err(c.get(f"/api/projects/{pid}"), 404, "not_found")
    err(c.get(f"/api/workspaces/{wid}"), 404, "not_found")
    err(c.get(f"/api/workspaces/{wid}/text/a.R"), 404, "not_found")
    assert c.get("/api/workspaces").json() == []


def test_upload_download_zip_and_import(any_db_hub: HubProcess) -> None:
    hub = any_db_hub
    c = hub.client(hub.make_user("gus"))
    pid, wid = new_workspace(c)

    files = {
        "analysis.R": b"library(stats)\nprint(1 + 1)\n",
        "data.csv": b"a,b\n1,2\n3,4\n",
        "blob.bin": bytes(range(256)) * 4,
    }
    r = c.post(
        f"/api/workspaces/{wid}/upload",
        files=[("files", (name, data)) for name, data in files.items()],
    )
    assert r.status_code == 200, r.text
    assert sorted(f["path"] for f in r.json()) == sorted(files)
    assert all(f["version"] == 1 for f in r.json())
    kinds = {f["path"]: f["kind"] for f in r.json()}
    assert kinds["analysis.R"] == "source" and kinds["data.csv"] == "other"
    # Into a folder; an upload over an existing file makes a new version.
    r = c.post(
        f"/api/workspaces/{wid}/upload",
        params={"folder": "sub/dir"},
        files=[("files", ("notes.txt", b"hello\n"))],
    )
    assert r.status_code == 200 and r.json()[0]["path"] == "sub/dir/notes.txt", r.text
    files["sub/dir/notes.txt"] = b"hello\n"
    r = c.post(f"/api/workspaces/{wid}/upload", files=[("files", ("data.csv", b"a,b\n9,9\n"))])
    assert r.json()[0]["version"] == 2
    files["data.csv"] = b"a,b\n9,9\n"

    listed = c.get(f"/api/workspaces/{wid}/files").json()
    assert [f["path"] for f in listed] == sorted(files)
    # Timestamps carry their zone on every database (SQLite hands back naive ones).
    assert all(datetime.fromisoformat(f["updated_at"]).utcoffset() == timedelta(0) for f in listed)
    sizes = {f["path"]: (f["size"], f["sha256"]) for f in listed}
    for name, data in files.items():
        assert sizes[name] == (len(data), hashlib.sha256(data).hexdigest())

    # Download one file (current and an old version).
    r = c.get(f"/api/workspaces/{wid}/files/blob.bin")
    assert r.status_code == 200 and r.content == files["blob.bin"]
    assert r.headers["x-file-version"] == "1"
    r = c.get(f"/api/workspaces/{wid}/files/data.csv", params={"version": 1, "download": True})
    assert r.content == b"a,b\n1,2\n3,4\n" and r.headers["x-file-version"] == "1"
    assert r.headers["content-disposition"] == 'attachment; filename="data.csv"'
    err(c.get(f"/api/workspaces/{wid}/files/data.csv", params={"version": 7}), 404, "not_found")
    err(c.get(f"/api/workspaces/{wid}/files/missing.txt"), 404, "not_found")

    # The workspace as a zip holds exactly the current files.
    r = c.get(f"/api/workspaces/{wid}/zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert unzip(r.content) == files

    # Import that zip as a new workspace.
    r = c.post(
        f"/api/projects/{pid}/import",
        params={"name": "copy"},
        files={"file": ("ws.zip", r.content, "application/zip")},
    )
    assert r.status_code == 201, r.text
    assert r.json()["files"] == len(files)
    copy_id = r.json()["id"]
    assert unzip(c.get(f"/api/workspaces/{copy_id}/zip").content) == files

    # A zip of one top folder is imported without that folder (and without __MACOSX).
    wrapped = make_zip(
        {
            "project-main/": b"",
            "project-main/run.py": b"print('hi')\n",
            "project-main/lib/util.py": b"X = 1\n",
            "__MACOSX/project-main/._run.py": b"junk",
        }
    )
    r = c.post(
        f"/api/projects/{pid}/import",
        params={"name": "wrapped"},
        files={"file": ("w.zip", wrapped, "application/zip")},
    )
    assert r.status_code == 201, r.text
    wrapped_id = r.json()["id"]
    assert [f["path"] for f in c.get(f"/api/workspaces/{wrapped_id}/files").json()] == [
        "lib/util.py",
        "run.py",
    ]
    assert c.get(f"/api/workspaces/{wrapped_id}/text/run.py").json()["content"] == "print('hi')\n"

    # Two top folders are kept as they are.
    r = c.post(
        f"/api/projects/{pid}/import",
        params={"name": "two"},
        files={"file": ("t.zip", make_zip({"a/x.txt": b"1", "b/y.txt": b"2"}), "application/zip")},
    )
    two = r.json()["id"]
    assert [f["path"] for f in c.get(f"/api/workspaces/{two}/files").json()] == [
        "a/x.txt",
        "b/y.txt",
    ]

    # Bad imports: not a zip, a corrupt zip, a zip with '..', an existing name. None leaves
    # a workspace behind.
    before = {w["name"] for w in c.get(f"/api/projects/{pid}/workspaces").json()}
    err(
        c.post(
            f"/api/projects/{pid}/import",
            params={"name": "bad"},
            files={"file": ("x.zip", b"nope")},
        ),
        400,
        "invalid_zip",
    )
    corrupt = bytearray(
        make_zip({"first.txt": b"fine\n"}, deflate={"data.txt": b"hello world " * 100})
    )
    at = corrupt.index(b"data.txt") + len(b"data.txt") + 5  # inside the compressed bytes
    corrupt[at : at + 20] = bytes(b ^ 0xFF for b in corrupt[at : at + 20])
    e = err(
        c.post(
            f"/api/projects/{pid}/import",
            params={"name": "corrupt"},
            files={"file": ("c.zip", bytes(corrupt))},
        ),
        400,
        "invalid_zip",
    )
    assert "data.txt" in e["message"]
    err(
        c.post(
            f"/api/projects/{pid}/import",
            params={"name": "evil"},
            files={"file": ("e.zip", make_zip({"ok.txt": b"1", "../../evil.txt": b"2"}))},
        ),
        400,
        "invalid_path",
    )
    err(
        c.post(
            f"/api/projects/{pid}/import",
            params={"name": "copy"},
            files={"file": ("c.zip", make_zip({"a.txt": b"1"}))},
        ),
        409,
        "workspace_exists",
    )
    assert {w["name"] for w in c.get(f"/api/projects/{pid}/workspaces").json()} == before


def test_text_versions_history_restore_move_copy_delete(any_db_hub: HubProcess) -> None:
    hub = any_db_hub
    c = hub.client(hub.make_user("hal"))
    _, wid = new_workspace(c)
    text = f"/api/workspaces/{wid}/text"

    # base_version 0 creates; a second create of the same path says the file exists.
    r = c.put(f"{text}/src/main.R", json={"content": "v1\n", "base_version": 0})
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "src/main.R" and r.json()["version"] == 1
    conflict = err(
        c.put(f"{text}/src/main.R", json={"content": "x", "base_version": 0}),
        409,
        "file_exists",
    )
    assert conflict["current_version"] == 1
    assert (
        conflict["message"]
        == "'src/main.R' already exists (version 1): open it, or pick another name."
    )

    # Naming the current version succeeds and bumps it.
    r = c.put(f"{text}/src/main.R", json={"content": "v2\n", "base_version": 1})
    assert r.status_code == 200 and r.json()["version"] == 2
    r = c.put(f"{text}/src/main.R", json={"content": "v3 ünïcode\n", "base_version": 2})
    assert r.json()["version"] == 3

    # A stale save is refused with the current version, and changes nothing.
    stale = err(
        c.put(f"{text}/src/main.R", json={"content": "lost", "base_version": 1}),
        409,
        "version_conflict",
    )
    assert stale["current_version"] == 3
    assert stale["current_sha256"] == hashlib.sha256("v3 ünïcode\n".encode()).hexdigest()
    # Saving a file that does not exist while naming a version is a conflict too.
    gone = err(
        c.put(f"{text}/nope.R", json={"content": "x", "base_version": 4}), 409, "version_conflict"
    )
    assert gone["current_version"] == 0

    opened = c.get(f"{text}/src/main.R").json()
    assert opened == {"path": "src/main.R", "version": 3, "content": "v3 ünïcode\n"}
    assert c.get(f"{text}/src/main.R", params={"version": 1}).json()["content"] == "v1\n"

    # Raw PUT uses the same version check.
    raw = f"/api/workspaces/{wid}/files/src/main.R"
    err(c.put(raw, content=b"raw", params={"base_version": 2}), 409, "version_conflict")
    r = c.put(raw, content=b"v4 raw\n", params={"base_version": 3})
    assert r.status_code == 200 and r.json()["version"] == 4

    # History: newest first, with author and size.
    hist = c.get(f"/api/workspaces/{wid}/history/src/main.R").json()
    assert [h["version"] for h in hist] == [4, 3, 2, 1]
    assert all(h["author"] == "hal" for h in hist)
    assert hist[-1]["size"] == 3 and hist[-1]["sha256"] == hashlib.sha256(b"v1\n").hexdigest()

    # Restore an old version: a new version with the old content.
    r = c.post(f"/api/workspaces/{wid}/restore/src/main.R", json={"version": 1})
    assert r.status_code == 200 and r.json()["version"] == 5
    assert c.get(f"{text}/src/main.R").json() == {
        "path": "src/main.R",
        "version": 5,
        "content": "v1\n",
    }
    assert [h["version"] for h in c.get(f"/api/workspaces/{wid}/history/src/main.R").json()] == [
        5,
        4,
        3,
        2,
        1,
    ]
    err(c.post(f"/api/workspaces/{wid}/restore/src/main.R", json={"version": 99}), 404, "not_found")

    # Rename/move.
    r = c.post(f"/api/workspaces/{wid}/move", json={"from": "src/main.R", "to": "R/analysis.R"})
    assert r.status_code == 200 and r.json()["path"] == "R/analysis.R", r.text
    err(c.get(f"{text}/src/main.R"), 404, "not_found")
    assert c.get(f"{text}/R/analysis.R").json()["content"] == "v1\n"

    # Copy keeps the source.
    r = c.post(
        f"/api/workspaces/{wid}/move", json={"from": "R/analysis.R", "to": "R/copy.R", "copy": True}
    )
    assert r.status_code == 200 and r.json()["path"] == "R/copy.R"
    assert c.get(f"{text}/R/analysis.R").json()["content"] == "v1\n"
    assert c.get(f"{text}/R/copy.R").json()["content"] == "v1\n"
    # Onto an existing file, or from a missing one: refused.
    err(
        c.post(f"/api/workspaces/{wid}/move", json={"from": "R/copy.R", "to": "R/analysis.R"}),
        409,
        "file_exists",
    )
    err(
        c.post(f"/api/workspaces/{wid}/move", json={"from": "missing.R", "to": "x.R"}),
        404,
        "not_found",
    )

    # Delete.
    assert c.delete(f"/api/workspaces/{wid}/files/R/copy.R").json() == {"ok": True}
    err(c.get(f"{text}/R/copy.R"), 404, "not_found")
    err(c.delete(f"/api/workspaces/{wid}/files/R/copy.R"), 404, "not_found")
    assert [f["path"] for f in c.get(f"/api/workspaces/{wid}/files").json()] == ["R/analysis.R"]


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def fred(shared_hub: HubProcess) -> tuple[httpx.Client, str]:
    c = shared_hub.client(shared_hub.make_user("fred"))
    _, wid = new_workspace(c)
    return c, wid


@pytest.mark.parametrize(
    ("url_path", "needle"),
    [
        ("%2E%2E/etc/passwd", ".."),
        ("a/%2E%2E/%2E%2E/b.txt", ".."),
        ("/etc/passwd", "leading '/'"),
        ("a%00b.txt", "NUL"),
        ("a%01b.txt", "control"),
        ("a%09b.txt", "control"),
        ("a%7Fb.txt", "control"),
        ("a%5Cb.txt", "\\"),
        ("x" * 300, "255"),
        ("dir/" + "é" * 200 + ".txt", "255"),
        (" lead.txt", "spaces"),
    ],
)
def test_bad_paths_are_refused(fred: tuple[httpx.Client, str], url_path: str, needle: str) -> None:
    c, wid = fred
    for method, route, kw in [
        ("PUT", "text", {"json": {"content": "x", "base_version": 0}}),
        ("PUT", "files", {"content": b"x", "params": {"base_version": 0}}),
        ("GET", "text", {}),
        ("GET", "files", {}),
        ("GET", "history", {}),
        ("DELETE", "files", {}),
    ]:
        r = c.request(method, f"/api/workspaces/{wid}/{route}/{url_path}", **kw)
        e = err(r, 400, "invalid_path")
        assert needle in e["message"], (method, route, e)
    assert c.get(f"/api/workspaces/{wid}/files").json() == []


def test_newline_in_url_path_is_refused(fred: tuple[httpx.Client, str]) -> None:
    """A newline never reaches the handler: the route's ``path`` converter does not match
    it, so the answer is the router's 404 rather than invalid_path; nothing is stored."""
    c, wid = fred
    r = c.put(f"/api/workspaces/{wid}/text/a%0Ab.txt", json={"content": "x", "base_version": 0})
    assert r.status_code in (400, 404)
    assert r.json()["error"]["code"] in ("invalid_path", "not_found")
    assert c.get(f"/api/workspaces/{wid}/files").json() == []


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("../evil.txt", ".."),
        ("a/../../evil.txt", ".."),
        ("/etc/passwd", "leading '/'"),
        ("a\x00b", "NUL"),
        ("a\x1bb", "control"),
        ("a\nb.txt", "control"),
        ("n" * 300, "255"),
    ],
)
def test_bad_paths_in_bodies_are_refused(
    fred: tuple[httpx.Client, str], bad: str, needle: str
) -> None:
    c, wid = fred
    r = c.put(f"/api/workspaces/{wid}/text/good.txt", json={"content": "g", "base_version": None})
    assert r.status_code == 200, r.text
    try:
        e = err(
            c.post(f"/api/workspaces/{wid}/move", json={"from": "good.txt", "to": bad}),
            400,
            "invalid_path",
        )
        assert needle in e["message"]
        e = err(
            c.post(f"/api/workspaces/{wid}/move", json={"from": bad, "to": "x.txt"}),
            400,
            "invalid_path",
        )
        assert needle in e["message"]
        # httpx percent-escapes control characters (but ESC) in multipart file names.
        if not any(ord(ch) < 0x20 and ch != "\x1b" for ch in bad):
            r = c.post(f"/api/workspaces/{wid}/upload", files=[("files", (bad, b"x"))])
            assert needle in err(r, 400, "invalid_path")["message"]
        r = c.post(
            f"/api/workspaces/{wid}/upload",
            params={"folder": bad},
            files=[("files", ("f.txt", b"x"))],
        )
        assert needle in err(r, 400, "invalid_path")["message"]
        assert [f["path"] for f in c.get(f"/api/workspaces/{wid}/files").json()] == ["good.txt"]
    finally:
        for f in c.get(f"/api/workspaces/{wid}/files").json():
            c.delete(f"/api/workspaces/{wid}/files/{f['path']}")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("../evil.R", "Paths may not contain '..'."),
        ("a//b.R", "'a//b.R' has an empty folder name ('//')."),
        ("trailing/", "'trailing/' ends with '/': give a file name after the last folder."),
        ("   ", "File and folder names may not be blank."),
        ("", "A file path is required."),
    ],
)
def test_new_file_names_get_a_precise_message(
    fred: tuple[httpx.Client, str], bad: str, message: str
) -> None:
    # What the IDE's "New file" dialog sends: the path in the body, where the URL cannot
    # resolve '..' or '//' away before the path rules see it.
    c, wid = fred
    e = err(c.post(f"/api/workspaces/{wid}/new", json={"path": bad}), 400, "invalid_path")
    assert e["message"] == message
    if bad:  # (the move body itself requires a non-empty target: 422)
        r = c.post(f"/api/workspaces/{wid}/move", json={"from": "x.R", "to": bad})
        assert err(r, 400, "invalid_path")["message"] == message
    assert c.get(f"/api/workspaces/{wid}/files").json() == []


def test_new_file_route_creates_once(fred: tuple[httpx.Client, str]) -> None:
    c, wid = fred
    r = c.post(f"/api/workspaces/{wid}/new", json={"path": "./dir/new.R", "content": "1\n"})
    assert r.status_code == 201, r.text
    assert r.json()["path"] == "dir/new.R" and r.json()["version"] == 1
    e = err(c.post(f"/api/workspaces/{wid}/new", json={"path": "dir/new.R"}), 409, "file_exists")
    assert e["message"] == "'dir/new.R' already exists (version 1): open it, or pick another name."
    assert c.get(f"/api/workspaces/{wid}/text/dir/new.R").json()["content"] == "1\n"
    c.delete(f"/api/workspaces/{wid}/files/dir/new.R")


def test_binary_file_as_text_and_invalid_json(fred: tuple[httpx.Client, str]) -> None:
    c, wid = fred
    r = c.post(
        f"/api/workspaces/{wid}/upload",
        files=[
            ("files", ("img.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")),
            ("files", ("latin1.txt", "café".encode("latin-1"))),
        ],
    )
    assert r.status_code == 200, r.text
    try:
        assert (
            "binary"
            in err(c.get(f"/api/workspaces/{wid}/text/img.png"), 415, "binary_file")["message"]
        )
        err(c.get(f"/api/workspaces/{wid}/text/latin1.txt"), 415, "binary_file")
        # The raw download still works.
        assert c.get(f"/api/workspaces/{wid}/files/latin1.txt").content == "café".encode("latin-1")

        headers = {"content-type": "application/json"}
        err(
            c.put(f"/api/workspaces/{wid}/text/a.txt", content=b"{not json", headers=headers),
            422,
            "invalid_request",
        )
        err(c.post("/api/projects", content=b"[1, 2", headers=headers), 422, "invalid_request")
        e = err(
            c.put(f"/api/workspaces/{wid}/text/a.txt", json={"base_version": 0}),
            422,
            "invalid_request",
        )
        assert "content" in e["message"] and e["details"]
        err(
            c.put(f"/api/workspaces/{wid}/text/a.txt", json={"content": "x", "base_version": -1}),
            422,
            "invalid_request",
        )
        err(c.post(f"/api/workspaces/{wid}/move", json={"from": "a"}), 422, "invalid_request")
        err(c.post("/api/projects", json={"name": "x" * 200}), 422, "invalid_request")
        err(c.post(f"/api/workspaces/{wid}/upload"), 422, "invalid_request")
        assert sorted(f["path"] for f in c.get(f"/api/workspaces/{wid}/files").json()) == [
            "img.png",
            "latin1.txt",
        ]
    finally:
        c.delete(f"/api/workspaces/{wid}/files/img.png")
        c.delete(f"/api/workspaces/{wid}/files/latin1.txt")


def test_unknown_routes_and_methods_have_error_bodies(
    shared_hub: HubProcess, fred: tuple[httpx.Client, str]
) -> None:
    c, _ = fred
    err(c.get("/api/nothing-here"), 404, "not_found")
    err(c.patch("/api/me"), 405, "method_not_allowed")
    err(c.get("/api/workspaces/0123456789abcdef0123456789abcdef"), 404, "not_found")
    err(httpx.get(f"{shared_hub.url}/api/me"), 401, "unauthorized")


# --------------------------------------------------------------------------- limits


def test_file_and_workspace_size_limits(tmp_path: Path) -> None:
    hub = HubProcess(
        tmp_path / "d",
        env={"RSPARKHUB_MAX_FILE_BYTES": "1000", "RSPARKHUB_MAX_WORKSPACE_BYTES": "2500"},
    ).start()
    try:
        c = hub.client(hub.make_user("ivy"))
        _, wid = new_workspace(c)
        big = b"x" * 1001

        e = err(
            c.put(f"/api/workspaces/{wid}/files/big.bin", content=big, params={"base_version": 0}),
            413,
            "file_too_large",
        )
        assert "1000" in e["message"]
        err(
            c.put(
                f"/api/workspaces/{wid}/text/big.txt",
                json={"content": "y" * 1001, "base_version": 0},
            ),
            413,
            "file_too_large",
        )
        err(
            c.post(f"/api/workspaces/{wid}/upload", files=[("files", ("big.bin", big))]),
            413,
            "file_too_large",
        )
        # Streamed without a Content-Length: still cut off.
        err(
            c.put(
                f"/api/workspaces/{wid}/files/big.bin",
                content=iter([b"x" * 600, b"x" * 600]),
                params={"base_version": 0},
            ),
            413,
            "file_too_large",
        )
        assert c.get(f"/api/workspaces/{wid}/files").json() == []

        # Exactly the limit is fine.
        for name in ("a.bin", "b.bin"):
            r = c.put(
                f"/api/workspaces/{wid}/files/{name}",
                content=b"z" * 1000,
                params={"base_version": 0},
            )
            assert r.status_code == 200, r.text
        e = err(
            c.put(
                f"/api/workspaces/{wid}/files/c.bin", content=b"z" * 600, params={"base_version": 0}
            ),
            413,
            "workspace_full",
        )
        assert "2500" in e["message"]
        err(
            c.post(f"/api/workspaces/{wid}/upload", files=[("files", ("c.bin", b"z" * 600))]),
            413,
            "workspace_full",
        )
        # Replacing a file counts its new size, not both.
        r = c.put(
            f"/api/workspaces/{wid}/files/a.bin", content=b"q" * 1000, params={"base_version": 1}
        )
        assert r.status_code == 200 and r.json()["version"] == 2
        r = c.put(
            f"/api/workspaces/{wid}/files/c.bin", content=b"z" * 500, params={"base_version": 0}
        )
        assert r.status_code == 200
        assert sum(f["size"] for f in c.get(f"/api/workspaces/{wid}/files").json()) == 2500

        # A zip that expands beyond the workspace limit is refused as a whole.
        pid = c.get(f"/api/workspaces/{wid}").json()["project_id"]
        bomb = make_zip({f"f{i}.txt": b"0" * 900 for i in range(3)})
        err(
            c.post(
                f"/api/projects/{pid}/import",
                params={"name": "bomb"},
                files={"file": ("b.zip", bomb)},
            ),
            413,
            "workspace_full",
        )
        assert [w["name"] for w in c.get(f"/api/projects/{pid}/workspaces").json()] == ["ws"]
    finally:
        hub.close()


def test_per_user_disk_cap_across_workspaces(tmp_path: Path) -> None:
    """The owner's files in all their workspaces count against max_user_bytes, whoever
    writes; an editor's save into the owner's workspace is refused the same way."""
    hub = HubProcess(
        tmp_path / "d",
        env={"RSPARKHUB_MAX_WORKSPACE_BYTES": "2500", "RSPARKHUB_MAX_USER_BYTES": "3000"},
    ).start()
    try:
        c = hub.client(hub.make_user("uma"))
        pid, w1 = new_workspace(c)
        r = c.post(f"/api/projects/{pid}/workspaces", json={"name": "second"})
        w2 = r.json()["id"]
        for wid, name, size in ((w1, "a.bin", 2000), (w2, "b.bin", 900)):
            r = c.put(
                f"/api/workspaces/{wid}/files/{name}",
                content=b"z" * size,
                params={"base_version": 0},
            )
            assert r.status_code == 200, r.text
        e = err(
            c.put(
                f"/api/workspaces/{w2}/files/c.bin", content=b"z" * 200, params={"base_version": 0}
            ),
            413,
            "user_quota_exceeded",
        )
        assert "3000" in e["message"]
        # Shrinking a file is always allowed; then there is room again.
        r = c.put(
            f"/api/workspaces/{w1}/files/a.bin", content=b"q" * 1000, params={"base_version": 1}
        )
        assert r.status_code == 200, r.text
        r = c.put(
            f"/api/workspaces/{w2}/files/c.bin", content=b"z" * 200, params={"base_version": 0}
        )
        assert r.status_code == 200, r.text
    finally:
        hub.close()


# --------------------------------------------------------------------------- openapi, headers


def test_openapi_and_security_headers(
    shared_hub: HubProcess, fred: tuple[httpx.Client, str]
) -> None:
    r = httpx.get(f"{shared_hub.url}/api/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert spec["info"]["title"] == "rsparkhub"
    paths = spec["paths"]
    for route, method in [
        ("/api/login", "post"),
        ("/api/tokens", "post"),
        ("/api/projects", "get"),
        ("/api/workspaces/{workspace_id}/text/{path}", "put"),
        ("/api/workspaces/{workspace_id}/upload", "post"),
        ("/api/workspaces/{workspace_id}/history/{path}", "get"),
        ("/api/workspaces/{workspace_id}/session", "post"),
        ("/api/health", "get"),
    ]:
        assert method in paths[route], route
        assert paths[route][method]["summary"]
    assert all(p.startswith("/api/") for p in paths)

    for resp in (
        httpx.get(f"{shared_hub.url}/api/health"),
        httpx.get(f"{shared_hub.url}/api/me"),
        httpx.get(f"{shared_hub.url}/"),
        fred[0].get("/api/projects"),
    ):
        assert resp.headers["x-content-type-options"] == "nosniff"
        csp = resp.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["referrer-policy"] == "same-origin"

    # User files are served inert: sandboxed, never sniffed, never HTML.
    c, wid = fred
    c.put(
        f"/api/workspaces/{wid}/files/page.html",
        content=b"<script>alert(1)</script>",
        params={"base_version": 0},
    )
    try:
        r = c.get(f"/api/workspaces/{wid}/files/page.html")
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["content-security-policy"] == "sandbox"
        assert r.headers["x-content-type-options"] == "nosniff"
    finally:
        c.delete(f"/api/workspaces/{wid}/files/page.html")


def test_password_change_logs_out_other_browser_sessions(shared_hub: HubProcess) -> None:
    shared_hub.make_user("pia")
    one, two = login(shared_hub, "pia"), login(shared_hub, "pia")
    r = one.post(
        "/api/me/password", json={"old_password": PASSWORD, "new_password": "brand-new-secret"}
    )
    assert r.status_code == 200, r.text
    assert one.get("/api/me").status_code == 200  # the session that changed it stays
    err(two.get("/api/me"), 401, "unauthorized")
    err(
        one.post("/api/me/password", json={"old_password": "wrong-one", "new_password": "x" * 12}),
        403,
        "wrong_password",
    )
    login(shared_hub, "pia", "brand-new-secret").close()


def test_unicode_paths_have_one_spelling(fred: tuple[httpx.Client, str]) -> None:
    c, wid = fred
    composed, decomposed = "caf\u00e9.R", "cafe\u0301.R"
    r = c.put(f"/api/workspaces/{wid}/text/{composed}", json={"content": "1", "base_version": 0})
    assert r.status_code == 200, r.text
    r = c.get(f"/api/workspaces/{wid}/text/{decomposed}")
    assert r.status_code == 200 and r.json()["path"] == composed
    err(
        c.put(f"/api/workspaces/{wid}/text/{decomposed}", json={"content": "2", "base_version": 0}),
        409,
        "file_exists",
    )


def test_oversized_request_bodies_are_refused_before_parsing(hub_with: StartHub) -> None:
    hub = hub_with({"RSPARKHUB_MAX_UPLOAD_BYTES": "5000"})
    c = hub.client(hub.make_user("uma"))
    _, wid = new_workspace(c)
    body = {"content": "z" * 6000, "base_version": 0}
    e = err(c.put(f"/api/workspaces/{wid}/text/a.txt", json=body), 413, "request_too_large")
    assert "5000" in e["message"]
    assert c.get(f"/api/workspaces/{wid}/files").json() == []
    ok = c.put(f"/api/workspaces/{wid}/text/a.txt", json={"content": "small", "base_version": 0})
    assert ok.status_code == 200, ok.text


def test_limits_are_published_and_said_in_mb(hub_with: StartHub) -> None:
    """The IDE checks an upload against the limits before sending it (so it needs them),
    and every limit message names sizes in MB."""
    hub = hub_with(
        {
            "RSPARKHUB_MAX_FILE_BYTES": str(1024 * 1024),
            "RSPARKHUB_MAX_WORKSPACE_BYTES": str(3 * 1024 * 1024),
        }
    )
    c = hub.client(hub.make_user("ulla"))
    _pid, wid = new_workspace(c)
    c.put(f"/api/workspaces/{wid}/files/a.bin", content=b"z" * 1000, params={"base_version": 0})
    limits = c.get(f"/api/workspaces/{wid}/limits").json()
    assert limits["max_file_bytes"] == 1024 * 1024
    assert limits["max_workspace_bytes"] == 3 * 1024 * 1024
    assert limits["used_bytes"] == 1000
    assert limits["max_upload_bytes"] > 0
    r = c.post(
        f"/api/workspaces/{wid}/upload",
        files=[("files", ("big.bin", b"z" * (1024 * 1024 + 1)))],
    )
    assert err(r, 413, "file_too_large")["message"] == "'big.bin' is larger than the limit of 1 MB."
    r = c.put(
        f"/api/workspaces/{wid}/files/b.bin",
        content=b"z" * 2_000_000,
        params={"base_version": 0},
    )
    assert "1 MB" in err(r, 413, "file_too_large")["message"]
