"""The web client: the committed build matches its sources (scripts/webhash.py), and the
client's own unit tests (Vitest, web/src/**/*.test.ts) pass."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import HubProcess

ROOT = Path(__file__).resolve().parent.parent


def test_committed_build_is_fresh() -> None:
    out = subprocess.run(
        [sys.executable, "scripts/webhash.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr + " — run `cd web && npm run build` (scripts/install.sh)"
    assert (ROOT / "src/rsparkhub/web/dist/index.html").is_file()


def test_web_unit_tests() -> None:
    npx = shutil.which("npx")
    assert npx, "Node.js (npx) is needed for the web client's unit tests"
    assert (ROOT / "web/node_modules").is_dir(), "run scripts/install.sh (npm ci in web/)"
    out = subprocess.run(
        [npx, "vitest", "run"], cwd=ROOT / "web", capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "passed" in out.stdout


def test_the_hub_serves_the_client_with_caching_and_csp(shared_hub: HubProcess) -> None:
    import re

    import httpx

    with httpx.Client(base_url=shared_hub.url) as c:
        page = c.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
        assert any(a.endswith(".js") for a in assets), page.text
        for asset in assets:
            r = c.get(asset, headers={"Accept-Encoding": "gzip"})
            assert r.status_code == 200, asset
            assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
            if asset.endswith((".js", ".css")):
                assert r.headers["content-encoding"] == "gzip"
                on_disk = (ROOT / "src/rsparkhub/web/dist" / asset.lstrip("/")).read_bytes()
                assert r.content == on_disk  # httpx decodes the gzip body
        assert c.get("/assets/../../config.py").status_code == 404
        assert c.get("/assets/nope.js").status_code == 404
