"""Run records end to end: a real hub, real sandboxed sessions, real R and Python.

Run, Source, Render and ``rsparkhub run`` each leave a record naming the file's version,
every workspace file's version, the environment (R/Python versions and every package
version, read from the session's own interpreters), the exit status, the plots and the
files the code wrote (with their versions) and the rendered document; the records are
listed per workspace and per file over the API and by ``rsparkhub runs``, and survive a
hub restart."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

from conftest import RSPARKHUB, HubProcess, _hub

R_SCRIPT = """\
x <- read.csv("data.csv")
print(summary(x$v))
plot(x$v, main = "values")
write.csv(data.frame(v2 = x$v * 2), "doubled.csv", row.names = FALSE)
cat("done\\n")
"""

PY_SCRIPT = """\
import matplotlib.pyplot as plt
print("rows", sum(1 for _ in open("data.csv")) - 1)
plt.plot([1, 2, 3])
plt.show()
open("py-out.txt", "w").write("written by python\\n")
1 / 0
"""

REPORT = """\
---
title: "A report"
output: html_document
---

```{r}
x <- read.csv("data.csv")
mean(x$v)
```
"""

DATA = "v\n1\n2\n3\n4\n"


def _wait_done(c: Any, wid: str, request_id: str) -> dict[str, Any]:
    """The record of a request once it is no longer running (records are written as the
    events pass; the environment event may follow ``done``)."""
    deadline = time.monotonic() + 30
    while True:
        runs = c.get(f"/api/workspaces/{wid}/runs").json()
        run = next((r for r in runs if r["request_id"] == request_id), None)
        if run and run["status"] != "running" and run["environment"]["id"]:
            return c.get(f"/api/workspaces/{wid}/runs/{run['id']}").json()
        assert time.monotonic() < deadline, runs
        time.sleep(0.2)


def _by_kind(run: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [o for o in run["outputs"] if o["kind"] == kind]


async def test_run_source_render_leave_records_that_survive_a_restart(hub: HubProcess) -> None:
    token = hub.make_user("rita")
    c = hub.client(token)
    async with HubClient(hub.url, token) as h:
        ws = await h.ensure_workspace("records")
        wid = ws["id"]
        await h.upload(wid, {"data.csv": DATA.encode(), "fit.R": R_SCRIPT.encode()})
        await h.save_text(wid, "fit.R", R_SCRIPT + "# v2\n", 1)  # version 2 runs
        await h.upload(wid, {"plot.py": PY_SCRIPT.encode(), "report.Rmd": REPORT.encode()})
        async with h.attach(wid) as s:
            r_run = await s.run(path="fit.R", mode="run")
            assert r_run.ok, r_run.events
            py = await s.run(path="plot.py", mode="source")
            assert py.done is not None and py.done.status == "error"
            events = [ev async for ev in s.render("report.Rmd")]
            assert events[-1].status == "ok"  # type: ignore[union-attr]
            events = [
                ev async for ev in s.render("report.Rmd", in_session=True, output="out/r.html")
            ]
            assert events[-1].status == "ok"  # type: ignore[union-attr]
            in_session = events[-1].request_id  # type: ignore[union-attr]

    # Run (R): file version, inputs, environment, plot, file written, transcript
    run = _wait_done(c, wid, r_run.request_id)
    assert run["kind"] == "run" and run["command"] == "run fit.R" and run["user"] == "rita"
    assert run["via"] == "api"  # the Python client with an API token
    # the request itself, to send again
    assert run["request"] == {
        "type": "execute",
        "code": None,
        "path": "fit.R",
        "language": "r",
        "mode": "run",
    }
    assert run["language"] == "r" and run["file_version"] == 2 and run["status"] == "ok"
    fit_sha = hashlib.sha256((R_SCRIPT + "# v2\n").encode()).hexdigest()
    assert run["file_sha256"] == fit_sha
    inputs = {f["path"]: f["version"] for f in run["inputs"]}
    assert inputs == {"data.csv": 1, "fit.R": 2, "plot.py": 1, "report.Rmd": 1}
    assert run["environment"]["spawner"] == "local" and run["environment"]["profile"] == "local"
    r_env = run["environment"]["languages"]["r"]
    assert r_env["version"].startswith("4.") and r_env["packages"] > 20
    [plot] = _by_kind(run, "plot")
    assert plot["mime"] == "image/png" and plot["size"] > 0
    assert c.get(plot["url"]).content[:4] == b"\x89PNG"
    [written] = _by_kind(run, "file")
    assert written["path"] == "doubled.csv" and written["version"] == 1
    assert c.get(written["url"]).text.splitlines()[:2] == ['"v2"', "2"]
    transcript = c.get(f"/api/workspaces/{wid}/runs/{run['id']}/transcript")
    assert transcript.status_code == 200 and "done\n" in transcript.text
    assert run["transcript"]["sha256"] == hashlib.sha256(transcript.content).hexdigest()
    assert run["duration_ms"] > 0 and run["finished_at"] >= run["started_at"]

    # the full environment: every package with its version, from the session's own R
    env = c.get(f"/api/workspaces/{wid}/runs/{run['id']}/environment").json()
    assert env["id"] == run["environment"]["id"]
    r_pkgs = {p["name"]: p["version"] for p in env["languages"]["r"]["packages"]}
    assert r_pkgs["IRkernel"] and r_pkgs["stats"].startswith("4.")
    assert len(r_pkgs) == r_env["packages"]
    py_pkgs = {p["name"].lower(): p["version"] for p in env["languages"]["python"]["packages"]}
    import ipykernel

    assert py_pkgs["ipykernel"] == ipykernel.__version__
    assert env["os"]["name"]

    # Source (Python) that fails: status error, its plot and the file it wrote first
    src = _wait_done(c, wid, py.request_id)
    assert src["kind"] == "source" and src["status"] == "error" and src["language"] == "python"
    assert len(_by_kind(src, "plot")) == 1
    assert [(o["path"], o["version"]) for o in _by_kind(src, "file")] == [("py-out.txt", 1)]
    assert src["environment"]["id"] == run["environment"]["id"]  # one snapshot per session
    assert "ZeroDivisionError" in c.get(f"/api/workspaces/{wid}/runs/{src['id']}/transcript").text

    # Render: the document written, with its version
    render = c.get(f"/api/workspaces/{wid}/runs").json()[1]
    render = _wait_done(c, wid, render["request_id"])
    assert render["command"] == "render report.Rmd" and render["status"] == "ok"
    assert render["request"] == {
        "type": "render",
        "path": "report.Rmd",
        "output": None,
        "in_session": False,
    }
    [doc] = _by_kind(render, "document")
    assert doc["path"] == "report.html" and doc["version"] == 1
    assert doc["detail"]["engine"] == "rmarkdown"
    assert c.get(doc["url"]).text.lstrip().lower().startswith("<!doctype html")

    # rendered in the session's R, to another file
    again = _wait_done(c, wid, in_session)
    assert again["command"] == "render report.Rmd --in-session -o out/r.html"
    assert [(o["kind"], o["path"]) for o in again["outputs"]] == [
        ("file", "out/r.html"),
        ("document", "out/r.html"),
    ]

    # per workspace (newest first) and per file (ran it, or wrote it)
    listed = c.get(f"/api/workspaces/{wid}/runs").json()
    assert [r["kind"] for r in listed] == ["render", "render", "source", "run"]
    assert [r["id"] for r in c.get(f"/api/workspaces/{wid}/runs?path=fit.R").json()] == [run["id"]]
    assert [r["id"] for r in c.get(f"/api/workspaces/{wid}/runs?path=doubled.csv").json()] == [
        run["id"]
    ]
    assert [r["id"] for r in c.get(f"/api/workspaces/{wid}/runs?path=report.html").json()] == [
        render["id"]
    ]
    older = c.get(f"/api/workspaces/{wid}/runs?before={listed[1]['id']}").json()
    assert [r["id"] for r in older] == [listed[2]["id"], listed[3]["id"]]
    missing = c.get(f"/api/workspaces/{wid}/runs/{'0' * 32}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "run_not_found"
    assert "rsparkhub runs" in missing.json()["error"]["message"]

    # a hub restart keeps them all, outputs and environment included
    hub.restart()
    after = c.get(f"/api/workspaces/{wid}/runs").json()
    assert after == listed
    assert c.get(f"/api/workspaces/{wid}/runs/{run['id']}").json() == run


def test_rsparkhub_run_is_recorded_and_listed_by_rsparkhub_runs(
    hub: HubProcess, tmp_path: Path
) -> None:
    token = hub.make_user("carl")
    folder = tmp_path / "cli-runs"
    folder.mkdir()
    (folder / "data.csv").write_text(DATA)
    (folder / "fit.R").write_text(R_SCRIPT)
    env = {**os.environ, "RSPARKHUB_URL": hub.url, "RSPARKHUB_TOKEN": token}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RSPARKHUB, *args], capture_output=True, text=True, env=env, cwd=folder, timeout=180
        )

    ran = cli("run", "fit.R", "--with", ".")
    assert ran.returncode == 0, ran.stderr

    listed = cli("runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [run] = json.loads(listed.stdout)
    assert run["command"] == "rsparkhub run fit.R" and run["user"] == "carl"
    assert run["via"] == "cli"
    assert run["file_version"] == 1
    c = hub.client(token)
    run = _wait_done(c, run["workspace_id"], run["request_id"])
    assert run["status"] == "ok"
    assert [o["kind"] for o in run["outputs"]] == ["plot", "file"]

    table = cli("runs", "list")  # the workspace is the folder's name, as for `run`
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == [
        "RUN",
        "STARTED",
        "USER",
        "COMMAND",
        "VERSION",
        "STATUS",
        "TIME",
        "OUTPUTS",
    ]
    assert row.startswith(run["id"][:12]) and "rsparkhub run fit.R" in row and " ok " in row
    assert "1 plot, 1 file" in row

    shown = cli("runs", "show", run["id"][:12])
    assert shown.returncode == 0, shown.stderr
    assert f"run        {run['id']}" in shown.stdout
    assert "fit.R v1" in shown.stdout and "doubled.csv v1" in shown.stdout
    assert "r          4." in shown.stdout

    with_packages = cli("runs", "show", run["id"], "--packages")
    assert with_packages.returncode == 0, with_packages.stderr
    assert re.search(r"^r +IRkernel +\d", with_packages.stdout, re.M)
    assert re.search(r"^python +ipykernel +\d", with_packages.stdout, re.M)

    by_file = cli("runs", "list", "--file", "doubled.csv", "--json")
    assert [r["id"] for r in json.loads(by_file.stdout)] == [run["id"]]

    nothing = cli("runs", "list", "--workspace", "no-such-workspace")
    assert nothing.returncode == 2 and "no workspace 'no-such-workspace'" in nothing.stderr


def test_viewers_read_records_and_others_get_404(hub: HubProcess) -> None:
    owner, viewer, stranger = (hub.make_user(n) for n in ("olga", "vic", "sam"))
    o = hub.client(owner)
    pid = o.post("/api/projects", json={"name": "p"}).json()["id"]
    wid = o.post(f"/api/projects/{pid}/workspaces", json={"name": "w"}).json()["id"]
    o.put(f"/api/workspaces/{wid}/members", json={"user": "vic", "role": "viewer"})
    assert hub.client(viewer).get(f"/api/workspaces/{wid}/runs").json() == []
    r = hub.client(stranger).get(f"/api/workspaces/{wid}/runs")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


@pytest.fixture
def pg_hub(tmp_path: Path, pg_database: str) -> Iterator[HubProcess]:
    """A hub whose database is a real PostgreSQL server the tests started."""
    yield from _hub(tmp_path / "data", {"RSPARKHUB_DATABASE_URL": pg_database})


async def test_records_on_postgresql_survive_a_restart(pg_hub: HubProcess) -> None:
    token = pg_hub.make_user("paula")
    c = pg_hub.client(token)
    script = 'open("out.txt", "w").write("hi\\n")\nprint("ok")\n'
    async with HubClient(pg_hub.url, token) as h:
        wid = (await h.ensure_workspace("pg"))["id"]
        await h.upload(wid, {"w.py": script.encode()})
        async with h.attach(wid) as s:
            first = await s.run(path="w.py", mode="run")
            second = await s.run(path="w.py", mode="source")
    assert first.ok and second.ok
    one = _wait_done(c, wid, first.request_id)
    two = _wait_done(c, wid, second.request_id)
    assert [(o["kind"], o["path"], o["version"]) for o in one["outputs"]] == [
        ("file", "out.txt", 1)
    ]
    assert two["outputs"] == []  # the same bytes again: nothing new was written
    assert one["environment"]["id"] == two["environment"]["id"]
    assert one["environment"]["languages"]["python"]["packages"] > 10
    listed = c.get(f"/api/workspaces/{wid}/runs").json()
    assert [r["id"] for r in listed] == [two["id"], one["id"]]
    assert [r["id"] for r in c.get(f"/api/workspaces/{wid}/runs?before={two['id']}").json()] == [
        one["id"]
    ]
    pg_hub.restart()
    assert c.get(f"/api/workspaces/{wid}/runs").json() == listed
    assert c.get(f"/api/workspaces/{wid}/runs/{one['id']}").json() == one


async def test_a_run_cut_short_by_a_stop_is_closed(hub: HubProcess) -> None:
    """The session stops while a run is running: its record ends (not ``running``
    forever), with the code and sentence of the ``done`` that ended it."""
    token = hub.make_user("stan")
    c = hub.client(token)
    async with HubClient(hub.url, token) as h:
        wid = (await h.ensure_workspace("cut"))["id"]
        await h.upload(
            wid, {"slow.py": b"import time\nprint('start', flush=True)\ntime.sleep(120)\n"}
        )
        async with h.attach(wid) as s:
            await s.send(P.ExecuteRequest(id="slow", path="slow.py", mode="run"))
            async for msg in s.messages(timeout=60):
                ev = msg.get("event", {})
                if ev.get("type") == "stream" and "start" in ev.get("text", ""):
                    break
            await h.stop_session(wid)
    deadline = time.monotonic() + 30
    while True:
        [run] = c.get(f"/api/workspaces/{wid}/runs").json()
        if run["status"] != "running":
            break
        assert time.monotonic() < deadline, run
        await asyncio.sleep(0.2)
    assert run["status"] in ("failed", "aborted"), run
    assert run["error_code"] and run["message"] and run["finished_at"]
    assert run["environment"]["languages"]["python"]["version"]


async def test_a_run_goes_on_being_recorded_across_a_hub_crash(hub: HubProcess) -> None:
    """The hub is killed while a run prints; the restarted hub adopts the session and the
    record: the plot and the file the run makes afterwards are its outputs, its status is
    the run's, and its transcript is said to be incomplete (the hub lost its first part)."""
    token = hub.make_user("kim")
    c = hub.client(token)
    code = (
        "import time\nimport matplotlib.pyplot as plt\nprint('before', flush=True)\n"
        "time.sleep(6)\nplt.plot([1, 2])\nplt.show()\nopen('after.txt', 'w').write('x')\n"
    )
    async with HubClient(hub.url, token) as h:
        wid = (await h.ensure_workspace("crash"))["id"]
        await h.upload(wid, {"slow.py": code.encode()})
        async with h.attach(wid) as s:
            await s.send(P.ExecuteRequest(id="slow", path="slow.py", mode="run"))
            async for msg in s.messages(timeout=60):
                ev = msg.get("event", {})
                if ev.get("type") == "stream" and "before" in ev.get("text", ""):
                    break
            hub.stop(signal.SIGKILL)
    hub.start()
    deadline = time.monotonic() + 60
    while True:
        [run] = c.get(f"/api/workspaces/{wid}/runs").json()
        if run["status"] != "running":
            break
        assert time.monotonic() < deadline, run
        await asyncio.sleep(0.3)
    assert run["status"] == "ok", run
    assert [(o["kind"], o["path"]) for o in run["outputs"]] == [
        ("plot", None),
        ("file", "after.txt"),
    ]
    assert run["transcript"] == {
        "sha256": None,
        "bytes": run["transcript"]["bytes"],
        "complete": False,
    }


@pytest.fixture
def python_only_hub(tmp_path: Path) -> Iterator[HubProcess]:
    """A hub whose sessions offer Python only (``session_languages``)."""
    yield from _hub(tmp_path / "data", {"RSPARKHUB_SESSION_LANGUAGES": "python"})


async def test_a_run_that_cannot_start_is_recorded_as_failed(python_only_hub: HubProcess) -> None:
    """An R file in a session without R: the run never starts, and its record says why."""
    hub = python_only_hub
    token = hub.make_user("nora")
    c = hub.client(token)
    async with HubClient(hub.url, token) as h:
        wid = (await h.ensure_workspace("no-r"))["id"]
        await h.upload(wid, {"fit.R": R_SCRIPT.encode()})
        async with h.attach(wid) as s:
            result = await s.run(path="fit.R", mode="source")
    assert result.done is not None and result.done.error_code == "language_unavailable"
    [run] = c.get(f"/api/workspaces/{wid}/runs").json()
    assert run["status"] == "failed" and run["error_code"] == "language_unavailable"
    assert run["command"] == "source fit.R" and run["language"] == "r" and run["user"] == "nora"
    assert run["file_version"] == 1 and run["via"] == "api"
    assert "No r kernel" in run["message"]
