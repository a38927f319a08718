"""Where the session's packages come from: the kernels' search paths for the workspace's
declared environment and its overlay, and the Packages pane's listing.

The hub (hub/environments/) hands the agent three directories in its environment:
``RSPARKHUB_ENV_PYTHON`` (a read-only ``site`` directory built from requirements.txt),
``RSPARKHUB_ENV_R`` (a read-only R library built from DESCRIPTION) and
``RSPARKHUB_OVERLAY`` (the workspace's own writable ``python/`` and ``r/``). Only the
kernels (and renders) get them on their paths, overlay first, then the environment, then
the base — the agent's own imports stay the base's, so a workspace pinning a package the
agent uses cannot break the agent. ``pip install`` (``PIP_TARGET``) and
``install.packages`` (the first of ``R_LIBS``) write into the overlay.

``packages`` lists what the session has, from the environment snapshot run records use
(``environment.EnvironmentProbe``), each package with its source: ``overlay``,
``environment`` or ``base``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_PYTHON = "RSPARKHUB_ENV_PYTHON"
ENV_R = "RSPARKHUB_ENV_R"
OVERLAY = "RSPARKHUB_OVERLAY"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


def _paths(*parts: str | None) -> str:
    return os.pathsep.join(p for p in parts if p)


def kernel_vars(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that put the overlay and the declared environment on the kernels'
    paths (empty when the hub gave neither)."""
    out: dict[str, str] = {}
    overlay = environ.get(OVERLAY)
    py_overlay = str(Path(overlay) / "python") if overlay else None
    r_overlay = str(Path(overlay) / "r") if overlay else None
    if py_overlay or environ.get(ENV_PYTHON):
        out["PYTHONPATH"] = _paths(py_overlay, environ.get(ENV_PYTHON), environ.get("PYTHONPATH"))
    if py_overlay:
        out["PIP_TARGET"] = py_overlay
        # pip --target refuses to replace a package already in the overlay without it
        out["PIP_UPGRADE"] = "1"
        out["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        # pip trusts its own certifi copy; the machine's CA store (a proxy's CA included)
        # is what R, curl and the hub's environment builds (uv) trust
        if "PIP_CERT" not in environ and os.path.exists(SYSTEM_CA):
            out["PIP_CERT"] = SYSTEM_CA
    if r_overlay or environ.get(ENV_R):
        out["R_LIBS"] = _paths(r_overlay, environ.get(ENV_R), environ.get("R_LIBS"))
    if r_overlay:
        out["R_LIBS_USER"] = r_overlay
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_names(site: str | None) -> set[str]:
    """Normalised names of the distributions installed in a site directory."""
    if not site:
        return set()
    try:
        entries = os.listdir(site)
    except OSError:
        return set()
    return {
        _norm(e.rsplit(".", 1)[0].rsplit("-", 1)[0])  # six-1.16.0.dist-info -> six
        for e in entries
        if e.endswith((".dist-info", ".egg-info"))
    }


def declared(environ: Mapping[str, str]) -> dict[str, Any]:
    """Which declaration each language's environment was built from (the
    ``environment.json`` the hub wrote next to it), per language that has one."""
    out: dict[str, Any] = {}
    for lang, var in (("python", ENV_PYTHON), ("r", ENV_R)):
        if not environ.get(var):
            continue
        try:
            meta = json.loads((Path(environ[var]).parent / "environment.json").read_text())
        except (OSError, ValueError):
            continue
        out[lang] = {"declaration": meta.get("declaration"), "key": meta.get("key")}
    return out


def packages(snapshot: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Every package of the snapshot, per language, with its source; ``environments``:
    what each language's declared environment was built from."""
    overlay = environ.get(OVERLAY)
    py_overlay = _dist_names(str(Path(overlay) / "python") if overlay else None)
    py_env = _dist_names(environ.get(ENV_PYTHON))
    r_sources = {
        str(Path(d).resolve()): source
        for d, source in (
            (str(Path(overlay) / "r") if overlay else None, "overlay"),
            (environ.get(ENV_R), "environment"),
        )
        if d
    }
    out: dict[str, Any] = {"environments": declared(environ)}
    langs = snapshot.get("languages", {})
    if "python" in langs and "packages" in langs["python"]:
        rows = []
        for p in langs["python"]["packages"]:
            n = _norm(p["name"])
            source = "overlay" if n in py_overlay else "environment" if n in py_env else "base"
            rows.append({"name": p["name"], "version": p["version"], "source": source})
        out["python"] = rows
    if "r" in langs and "packages" in langs["r"]:
        out["r"] = [
            {
                "name": p["name"],
                "version": p["version"],
                "source": r_sources.get(str(Path(p.get("library") or "/").resolve()), "base")
                if p.get("library")
                else "base",
            }
            for p in langs["r"]["packages"]
        ]
    return out
