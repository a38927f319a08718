"""The API's interactive documentation at ``/api/docs``: Swagger UI 5 (OpenAPI 3.1) from
assets the package's dependencies ship (the ``fastapi-offline`` wheel's static files; none
of its code is used) and our own ``docs_assets/init.js``. The page works on a machine
without internet and under the hub's strict CSP (no inline script). Public, like
``/api/openapi.json``: it shows the API's shape, no data."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from rsparkhub.hub.errors import not_found

router = APIRouter(include_in_schema=False)

OWN = Path(__file__).resolve().parent / "docs_assets"
SWAGGER = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui-bundle.js": (SWAGGER / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": (SWAGGER / "swagger-ui.css", "text/css"),
    "favicon.png": (SWAGGER / "favicon.png", "image/png"),
    "init.js": (OWN / "init.js", "text/javascript"),
}
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>rsparkhub API</title>
<link rel="icon" href="/api/docs/assets/favicon.png">
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/docs/assets/swagger-ui-bundle.js"></script>
<script src="/api/docs/assets/init.js"></script>
</body>
</html>
"""


@router.get("/api/docs")
async def api_docs() -> HTMLResponse:
    return HTMLResponse(PAGE)


@router.get("/api/docs/assets/{name}")
async def api_docs_asset(name: str) -> FileResponse:
    known = ASSETS.get(name)
    if known is None:
        raise not_found(f"The documentation asset '{name}'")
    path, media = known
    return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=86400"})
