"""Re-running run records on a real hub with real R and Python sessions.

A re-run materialises the record's file versions into a new workspace of the caller's
(project ``reruns``), sends the recorded request to a fresh session, records it (linked to
the original) and compares: ``rsparkhub rerun`` exits 0 when it reproduced, 1 when not,
with the cause; what the workspace holds now does not matter; viewers may not re-run."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_runs import DATA, R_SCRIPT, _hub, _wait_done

from rsparkhub.client import HubClient

from conftest import RSPARKHUB, HubProcess

RANDOM_PY = """\
import random
values = [random.random() for _ in range(3)]
print("values", values)
with open("rand.csv", "w") as f:
    f.write("i,value\\n" + "".join(f"{i},{v}\\n" for i, v in enumerate(values)))
"""


def rerun_report(
    c: httpx.Client, wid: str, run_id: str, body: dict[str, Any] | None = None, limit: float = 600
) -> dict[str, Any]:
    """POST …/rerun (202: the re-run's new workspace, ``running``), then its ``status_url``
    until the report (``done``) or a failure; bounded by ``limit`` seconds."""
    r = c.post(f"/api/workspaces/{wid}/runs/{run_id}/rerun", json=body or {})
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["state"] == "running" and started["run_id"] == run_id, started
    assert started["status_url"] == f"/api/workspaces/{started['workspace_id']}/rerun"
    deadline = time.monotonic() + limit
    while True:
        state = c.get(started["status_url"]).json()
        if state["state"] != "running":
            assert state["state"] == "done", state
            assert state["workspace_id"] == started["workspace_id"], state
            return dict(state)
        assert time.monotonic() < deadline, f"no report within {limit} s: {state}"
        time.sleep(0.5)


# Finishes at once in the workspace it was written in; in a re-run it waits for something
# that never comes, as code waiting on a service only the original session had would.
HANGS_IN_A_RERUN = """\
import os, time
if os.environ["RSPARKHUB_WORKSPACE_ID"] != "{wid}":
    time.sleep(600)
print("finished")
"""
QUICK_RERUN_TIMEOUT_S = 8


@pytest.fixture
def quick_rerun_hub(tmp_path: Path) -> Iterator[HubProcess]:
    """A hub that gives a re-run's recorded request 8 s (``rerun_timeout_s``)."""
    yield from _hub(tmp_path / "data", {"RSPARKHUB_RERUN_TIMEOUT_S": str(QUICK_RERUN_TIMEOUT_S)})


def _causes(report: dict[str, Any]) -> list[str]:
    return [d["cause"] for d in report["differences"] if d["blocking"]]


async def test_rerun_reproduces_uses_recorded_versions_and_names_causes(hub: HubProcess) -> None:
    token = hub.make_user("rae")
    c = hub.client(token)
    async with HubClient(hub.url, token) as h:
        wid = (await h.ensure_workspace("repro"))["id"]
        await h.upload(
            wid,
            {"data.csv": DATA.encode(), "fit.R": R_SCRIPT.encode(), "rand.py": RANDOM_PY.encode()},
        )
        async with h.attach(wid) as s:
            fit = await s.run(path="fit.R", mode="run")
            rand = await s.run(path="rand.py", mode="source")
        assert fit.ok and rand.ok, (fit.events, rand.events)
        # the workspace moves on: a different data file now
        await h.upload(wid, {"data.csv": b"v\n100\n200\n"})
        await h.stop_session(wid)
    fit_run = _wait_done(c, wid, fit.request_id)
    rand_run = _wait_done(c, wid, rand.request_id)

    env = {**os.environ, "RSPARKHUB_URL": hub.url, "RSPARKHUB_TOKEN": token}

    def rerun(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RSPARKHUB, "rerun", *args, "--workspace", "repro"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    # 1. the recorded versions are used: it reproduces (transcript, plot, doubled.csv)
    done = rerun(fit_run["id"][:12])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "REPRODUCED (compared 3 inputs, 1 transcript, 1 plots, 1 files)" in done.stdout
    assert "re-ran run fit.R" in done.stdout
    listed = c.get("/api/workspaces").json()
    [copy] = [w for w in listed if w["project"] == "reruns"]
    assert copy["name"].startswith(f"repro rerun {fit_run['id'][:12]} ")
    files = {f["path"]: f for f in c.get(f"/api/workspaces/{copy['id']}/files").json()}
    assert c.get(f"/api/workspaces/{copy['id']}/text/data.csv").json()["content"] == DATA
    assert set(files) == {"data.csv", "fit.R", "rand.py", "doubled.csv"}
    [again] = c.get(f"/api/workspaces/{copy['id']}/runs").json()
    assert again["rerun_of"] == fit_run["id"] and again["via"] == "rerun"
    assert again["rerun"]["reproduced"] is True and again["status"] == "ok"
    assert c.get(f"/api/workspaces/{copy['id']}/session").json()["state"] in ("stopped", "stopping")

    # 2. random numbers without a seed: not reproduced, and why
    report = rerun_report(c, wid, rand_run["id"])
    assert report["reproduced"] is False and report["verdict"] == "not reproduced"
    causes = _causes(report)
    assert causes[0].startswith("the console output differs (2 line(s))"), causes
    assert causes[1].startswith("file rand.csv differs (sha256 "), causes
    csv_details = next(d for d in report["differences"] if d["subject"] == "rand.csv")["details"]
    assert csv_details[0] == "3 cell(s) changed in 3 rows"
    # an ignore pattern of the caller's masks the numbers, in the console and in text files
    masked = rerun_report(c, wid, rand_run["id"], {"ignore": [r"0\.\d+"]})
    assert masked["reproduced"] is True and _causes(masked) == []
    bad = c.post(f"/api/workspaces/{wid}/runs/{rand_run['id']}/rerun", json={"ignore": ["("]})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_ignore"
    # the status of a workspace that had no re-run: 404 with a code; a non-member: refused
    none = c.get(f"/api/workspaces/{wid}/rerun")
    assert none.status_code == 404 and none.json()["error"]["code"] == "no_rerun", none.text
    outsider = hub.client(hub.make_user("otto")).get(
        f"/api/workspaces/{masked['workspace_id']}/rerun"
    )
    assert outsider.status_code in (403, 404), outsider.text
    assert "reproduced" not in outsider.text

    # 3. the recorded data file's bytes were altered, and the recorded environment said
    # another ipykernel: the data file is the cause (exit 1), the package is reported
    data_sha = next(f["sha256"] for f in fit_run["inputs"] if f["path"] == "data.csv")
    blob = hub.data_dir / "blobs" / data_sha[:2] / data_sha[2:]
    os.chmod(blob, 0o644)
    blob.write_text("v\n1\n2\n3\n5\n")
    env_id = fit_run["environment"]["id"]
    env_blob = hub.data_dir / "blobs" / env_id[:2] / env_id[2:]
    snapshot = json.loads(env_blob.read_bytes())
    [ipk] = [p for p in snapshot["languages"]["python"]["packages"] if p["name"] == "ipykernel"]
    real, ipk["version"] = ipk["version"], "0.0.1"
    os.chmod(env_blob, 0o644)
    env_blob.write_text(json.dumps(snapshot))
    tampered = rerun(fit_run["id"], "--json")
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    report = json.loads(tampered.stdout)
    causes = _causes(report)
    assert causes[0] == "input file data.csv changed", causes
    assert "the console output differs" in causes[1]
    assert any(c.startswith("file doubled.csv differs") for c in causes), causes
    reported = [d["cause"] for d in report["differences"] if not d["blocking"]]
    assert reported == [f"Python package ipykernel 0.0.1 → {real}"], reported
    text = rerun(fit_run["id"])
    assert text.returncode == 1 and "NOT REPRODUCED" in text.stdout
    assert "✗ input file data.csv changed" in text.stdout
    assert f"· Python package ipykernel 0.0.1 → {real}" in text.stdout

    # 4. errors exit 2 with a sentence
    missing = rerun("0" * 32)
    assert missing.returncode == 2 and "no run record" in missing.stderr.lower()


def test_viewers_cannot_rerun(hub: HubProcess, tmp_path: Path) -> None:
    owner, viewer = hub.make_user("ora"), hub.make_user("vin")
    o = hub.client(owner)
    pid = o.post("/api/projects", json={"name": "p"}).json()["id"]
    wid = o.post(f"/api/projects/{pid}/workspaces", json={"name": "w"}).json()["id"]
    o.put(f"/api/workspaces/{wid}/members", json={"user": "vin", "role": "viewer"})
    r = hub.client(viewer).post(f"/api/workspaces/{wid}/runs/{'0' * 32}/rerun", json={})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert "viewer" in r.json()["error"]["message"]
    assert hub.client(viewer).get("/api/workspaces").json()[0]["role"] == "viewer"


async def test_a_rerun_that_does_not_finish_fails_and_says_why(
    quick_rerun_hub: HubProcess,
) -> None:
    """A re-run whose request outlives ``rerun_timeout_s`` ends ``failed`` (not "not
    reproduced"): the status says why, its session is stopped, its workspace and record
    stay, and ``rsparkhub rerun`` exits 2 with the hub's sentence."""
    hub = quick_rerun_hub
    token = hub.make_user("tess")
    c = hub.client(token)
    async with HubClient(hub.url, token) as h:
        wid = (await h.ensure_workspace("hangs"))["id"]
        await h.upload(wid, {"wait.py": HANGS_IN_A_RERUN.format(wid=wid).encode()})
        async with h.attach(wid) as s:
            first = await s.run(path="wait.py", mode="source")
        assert first.ok and "finished" in first.stdout, first.events
        await h.stop_session(wid)
    _check_the_failed_rerun(hub, token, _wait_done(c, wid, first.request_id))


def _check_the_failed_rerun(hub: HubProcess, token: str, original: dict[str, Any]) -> None:
    c = hub.client(token)
    wid = original["workspace_id"]
    r = c.post(f"/api/workspaces/{wid}/runs/{original['id']}/rerun", json={})
    assert r.status_code == 202, r.text
    started = r.json()
    deadline = time.monotonic() + 180
    state = started
    while state["state"] == "running":
        assert time.monotonic() < deadline, f"the re-run neither ended nor failed: {state}"
        time.sleep(0.5)
        state = c.get(started["status_url"]).json()
    assert state["state"] == "failed", state
    assert state["run_id"] == original["id"] and state["workspace_id"] == started["workspace_id"]
    assert state["error"]["code"] == "rerun_timeout", state
    assert f"within {QUICK_RERUN_TIMEOUT_S} s" in state["error"]["message"], state
    copy = started["workspace_id"]
    # its session was stopped (the code was still sleeping); the workspace and the re-run's
    # own record stay, closed
    session = c.get(f"/api/workspaces/{copy}/session").json()
    assert session["state"] in ("stopped", "stopping"), session
    for _ in range(60):
        [again] = c.get(f"/api/workspaces/{copy}/runs").json()
        if again["status"] != "running":
            break
        time.sleep(0.5)
    assert again["via"] == "rerun" and again["status"] != "ok", again
    assert again["rerun"] is None, again  # no report: nothing was compared

    env = {**os.environ, "RSPARKHUB_URL": hub.url, "RSPARKHUB_TOKEN": token}
    cli = subprocess.run(
        [RSPARKHUB, "rerun", original["id"][:12], "--workspace", "hangs"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert cli.returncode == 2, cli.stdout + cli.stderr
    assert "did not finish within" in cli.stderr and "rerun_timeout_s" in cli.stderr, cli.stderr
