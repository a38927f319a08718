"""Workspaces created from the bundled examples, and files served for display in the
IDE's Viewer: their own type, HTML in an opaque-origin sandbox, PDFs without scripts."""

from __future__ import annotations

import time
import uuid

from rsparkhub.examples import examples

from conftest import HubProcess


def test_examples_are_listed_and_copied(shared_hub: HubProcess, alice: str) -> None:
    with shared_hub.client(alice) as c:
        listed = {e["name"]: e for e in c.get("/api/examples").json()}
        assert {"nls-puromycin", "rmarkdown-report"} <= set(listed)
        assert listed["nls-puromycin"]["files"] == ["analysis.R"]
        assert all(e["title"] and e["description"] for e in listed.values())
        pid = c.post("/api/projects", json={"name": f"ex-{uuid.uuid4().hex[:6]}"}).json()["id"]
        r = c.post(
            f"/api/projects/{pid}/workspaces",
            json={"name": "report", "example": "rmarkdown-report"},
        )
        assert r.status_code == 201, r.text
        wid = r.json()["id"]
        assert r.json()["files"] == 1
        files = c.get(f"/api/workspaces/{wid}/files").json()
        assert [f["path"] for f in files] == ["report.Rmd"]
        shipped = dict(next(e for e in examples() if e.name == "rmarkdown-report").files())
        got = c.get(f"/api/workspaces/{wid}/files/report.Rmd").content
        assert got == shipped["report.Rmd"]
        r = c.post(f"/api/projects/{pid}/workspaces", json={"name": "x", "example": "nope"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "example_not_found"
        assert "nls-puromycin" in r.json()["error"]["message"]
        # the failed request created nothing
        names = [w["name"] for w in c.get(f"/api/projects/{pid}/workspaces").json()]
        assert names == ["report"]


def test_raw_files_for_the_viewer(shared_hub: HubProcess, alice: str) -> None:
    with shared_hub.client(alice) as c:
        pid = c.post("/api/projects", json={"name": f"raw-{uuid.uuid4().hex[:6]}"}).json()["id"]
        wid = c.post(f"/api/projects/{pid}/workspaces", json={"name": "w"}).json()["id"]
        page = b"<html><script>fetch('/api/me')</script><p>hi</p></html>"
        for name, data in [("doc.html", page), ("doc.pdf", b"%PDF-1.4\n"), ("x.bin", b"\0\1")]:
            r = c.post(f"/api/workspaces/{wid}/upload", files=[("files", (name, data))])
            assert r.status_code in (200, 201), r.text
        r = c.get(f"/api/workspaces/{wid}/raw/doc.html")
        assert r.status_code == 200 and r.content == page
        assert r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert csp.startswith("sandbox allow-scripts") and "allow-same-origin" not in csp
        assert r.headers["x-frame-options"] == "SAMEORIGIN"
        r = c.get(f"/api/workspaces/{wid}/raw/doc.pdf")
        assert r.headers["content-type"] == "application/pdf"
        assert "script-src 'none'" in r.headers["content-security-policy"]
        r = c.get(f"/api/workspaces/{wid}/raw/x.bin")
        assert r.headers["content-type"] == "application/octet-stream"
        assert c.get(f"/api/workspaces/{wid}/raw/missing.html").status_code == 404


def test_admin_sees_session_memory(shared_hub: HubProcess, alice: str) -> None:
    admin = shared_hub.make_user(f"root{uuid.uuid4().hex[:6]}", admin=True)
    with shared_hub.client(alice) as c, shared_hub.client(admin) as a:
        pid = c.post("/api/projects", json={"name": f"mem-{uuid.uuid4().hex[:6]}"}).json()["id"]
        wid = c.post(f"/api/projects/{pid}/workspaces", json={"name": "w"}).json()["id"]
        assert c.post(f"/api/workspaces/{wid}/session").status_code == 200
        try:
            deadline = time.monotonic() + 30
            while True:  # the agent (a Python process, > 10 MiB) may still be starting
                rows = [s for s in a.get("/api/sessions").json() if s["workspace_id"] == wid]
                assert len(rows) == 1 and rows[0]["owner"] == "alice"
                assert isinstance(rows[0]["memory_bytes"], int)
                if rows[0]["memory_bytes"] > 10 << 20 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert rows[0]["memory_bytes"] > 10 << 20
            assert a.delete(f"/api/workspaces/{wid}/session").status_code == 200
        finally:
            c.delete(f"/api/workspaces/{wid}/session")
