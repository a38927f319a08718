"""The environment a run record names, read from the kernels' own interpreters (real R,
real Python, real bash — no hub): taken once, taken again only when a library directory
changed, and named by the hash of its canonical form. The announcer emits one
``environment`` event per recorded request, with the snapshot only the first time."""

from __future__ import annotations

import asyncio
import os
import platform
import time
from pathlib import Path

from rsparkhub import protocol as P
from rsparkhub.agent.environment import EnvironmentAnnouncer, EnvironmentProbe
from rsparkhub.runs_protocol import environment_id, summary


def _env(extra: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(extra)}


def _fake_dist(site: Path, name: str, version: str) -> None:
    d = site / f"{name}-{version}.dist-info"
    d.mkdir()
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    # a new mtime for the directory even within the file system's timestamp granularity
    later = time.time() + 5
    os.utime(site, (later, later))


async def test_snapshot_once_and_again_when_packages_change(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    probe = EnvironmentProbe(["r", "python", "bash"], lambda: _env(site), tmp_path)
    first_id, snap = await probe.current()
    assert first_id == environment_id(snap)
    py = snap["languages"]["python"]
    assert py["version"] == platform.python_version()
    assert str(site) in py["paths"]
    # each package's library directory, as R's (a re-run names overlay packages by it)
    assert all(p["library"] in py["paths"] for p in py["packages"]), py["packages"][:3]
    names = {p["name"].lower(): p["version"] for p in py["packages"]}
    assert "ipykernel" in names and "rsparkhub-fake" not in names
    r = snap["languages"]["r"]
    assert r["version"].startswith("4.") and r["version_string"].startswith("R version")
    r_names = {p["name"] for p in r["packages"]}
    assert {"base", "stats", "IRkernel", "jsonlite"} <= r_names
    assert r["libraries"] and all(p["library"] in r["libraries"] for p in r["packages"])
    assert snap["languages"]["bash"]["version"]
    assert snap["os"]["machine"] == platform.machine()
    assert summary(snap)["languages"]["r"]["packages"] == len(r["packages"])

    again_id, again = await probe.current()  # nothing changed: the same snapshot, not re-read
    assert again_id == first_id and again is snap

    _fake_dist(site, "rsparkhub-fake", "1.2.3")  # "pip install" into a library directory
    new_id, new = await probe.current()
    assert new_id != first_id
    names = {p["name"].lower(): p["version"] for p in new["languages"]["python"]["packages"]}
    assert names["rsparkhub-fake"] == "1.2.3"


async def test_one_event_per_recorded_request_with_the_snapshot_once(tmp_path: Path) -> None:
    probe = EnvironmentProbe(["python"], lambda: dict(os.environ), tmp_path)
    emitted: list[object] = []
    announcer = EnvironmentAnnouncer(probe, lambda ev: emitted.append(ev) or len(emitted))
    for rid, mode in (("a", "run"), ("b", "console"), ("c", "source"), ("d", "render")):
        announcer.seen(P.InputEvent(request_id=rid, user="u", mode=mode, path="x.py"))
    for _ in range(200):
        if len(emitted) == 3:
            break
        await asyncio.sleep(0.05)
    events = sorted(emitted, key=lambda e: e.request_id)  # type: ignore[attr-defined]
    assert [e.request_id for e in events] == ["a", "c", "d"]  # type: ignore[attr-defined]
    assert len({e.environment_id for e in events}) == 1  # type: ignore[attr-defined]
    assert sum(e.content is not None for e in events) == 1  # type: ignore[attr-defined]
