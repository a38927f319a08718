"""Export bundles on a real hub: records of real R and Python runs (and an R Markdown
render) export as a zip that re-runs in a clean directory with the machine's plain
``/usr/bin/python3`` and ``Rscript`` — no hub, no rsparkhub on the path — and says which
input changed when one did."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from test_runs import DATA, R_SCRIPT, REPORT, _wait_done

from rsparkhub.client import HubClient

from conftest import RSPARKHUB, HubProcess

ANALYSIS = """\
import csv
rows = list(csv.DictReader(open("data.csv")))
values = [float(r["v"]) for r in rows]
print("n", len(values), "mean", sum(values) / len(values))
with open("summary.csv", "w") as f:
    f.write("n,mean\\n%d,%s\\n" % (len(values), sum(values) / len(values)))
"""

PLOTS = """\
import numpy as np
import matplotlib.pyplot as plt
from analysis_helpers import nothing  # a workspace module: not a requirement
plt.plot(np.arange(3))
"""

PLAIN_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}


def _rerun(folder: Path, env: dict[str, str] = PLAIN_ENV) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/usr/bin/python3", "rerun.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _cli(hub: HubProcess, token: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RSPARKHUB_URL": hub.url, "RSPARKHUB_TOKEN": token}
    return subprocess.run(
        [RSPARKHUB, *args, "-o", "fit.zip"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _unzip(data: bytes, dest: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(dest)
        return {n: zf.read(n) for n in zf.namelist()}


async def test_exported_bundle_reruns_without_the_hub(hub: HubProcess, tmp_path: Path) -> None:
    token = hub.make_user("erin")
    c = hub.client(token)
    async with HubClient(hub.url, token) as h:
        wid = (await h.ensure_workspace("bundle"))["id"]
        await h.upload(
            wid,
            {
                "data.csv": DATA.encode(),
                "fit.R": R_SCRIPT.encode(),
                "analysis.py": ANALYSIS.encode(),
                "plots.py": PLOTS.encode(),
                "analysis_helpers.py": b"nothing = None\n",
                "report.Rmd": REPORT.encode(),
            },
        )
        async with h.attach(wid) as s:
            fit = await s.run(path="fit.R", mode="run")
            py = await s.run(path="analysis.py", mode="run")
            events = [ev async for ev in s.render("report.Rmd")]
        assert fit.ok and py.ok and events[-1].status == "ok"  # type: ignore[union-attr]
        await h.stop_session(wid)
    fit_run = _wait_done(c, wid, fit.request_id)
    _wait_done(c, wid, py.request_id)
    env = c.get(f"/api/workspaces/{wid}/runs/{fit_run['id']}/environment").json()
    recorded = {p["name"].lower(): p["version"] for p in env["languages"]["python"]["packages"]}

    # the whole workspace: the last run of each file
    r = c.get(f"/api/workspaces/{wid}/export")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert 'filename="bundle-runs.zip"' in r.headers["content-disposition"]
    whole = tmp_path / "whole"
    files = _unzip(r.content, whole)
    spec: dict[str, Any] = json.loads(files["runs.json"])
    assert [s["command"] for s in spec["runs"]] == [
        "run fit.R",
        "run analysis.py",
        "render report.Rmd",
    ]
    assert [s["plain_command"][0] for s in spec["runs"]] == ["Rscript", "python3", "Rscript"]
    assert spec["runs"][0]["plain_command"][2].startswith('png("rsparkhub-plot-%03d.png", width')
    assert [s["expected"]["compare_plots"] for s in spec["runs"]] == [True, False, False]
    assert "rmarkdown::render" in spec["runs"][2]["plain_command"][2]
    assert spec["runs"][0]["expected"]["compare_transcript"] is True
    assert spec["runs"][2]["expected"]["files"]["report.html"]["compare"] is False
    assert files["data.csv"] == DATA.encode() and files["fit.R"] == R_SCRIPT.encode()
    short = fit_run["id"][:12]
    assert f"expected/{short}/plots/1.png" in files
    assert files[f"expected/{short}/files/doubled.csv"].startswith(b'"v2"')
    assert b"done\n" in files[f"expected/{short}/transcript.txt"]
    # requirements: what plots.py imports, at the recorded versions; not the kernel's tooling
    reqs = files["requirements.txt"].decode().splitlines()[1:]
    assert reqs == [
        f"matplotlib=={recorded['matplotlib']}",
        f"numpy=={recorded['numpy']}",
    ]
    apt = files["apt.txt"].decode().split()
    assert apt[0] == "r-base-core" and "pandoc" in apt
    assert "r-cran-rmarkdown" in apt and "r-cran-knitr" in apt
    assert b'"rmarkdown" = "' in files["install.R"]
    assert files["runtime.txt"].decode().startswith("r-4.")
    assert (
        files["Dockerfile"].startswith(b"# Rebuilds")
        and b"FROM debian:bookworm" in files["Dockerfile"]
    )
    assert "python3 rerun.py" in files["README.md"].decode()

    done = _rerun(whole)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("REPRODUCED") == 3 and "all reproduced" in done.stdout
    # fit.R's record: six inputs checked, the printed output, its plot (by pixels, drawn
    # again as the session's R drew it) and doubled.csv compared
    assert "REPRODUCED (compared 6 inputs, 1 transcript, 1 plots, 1 files)" in done.stdout
    assert not (whole / "Rplots.pdf").exists()  # ran in a clean directory, not the bundle
    assert not (whole / "__pycache__").exists()
    assert "· Bash" not in done.stdout  # only the languages this machine was asked about

    # a data file changed in the bundle: not reproduced, and why
    (whole / "data.csv").write_text("v\n1\n2\n3\n5\n")
    changed = _rerun(whole)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "✗ input file data.csv changed" in changed.stdout
    assert "file doubled.csv differs" in changed.stdout
    assert "✗ plot 1 differs in " in changed.stdout
    assert "NOT all reproduced" in changed.stdout

    # one run only
    one = c.get(f"/api/workspaces/{wid}/export", params={"run": fit_run["id"]})
    assert one.status_code == 200
    single = tmp_path / "single"
    spec = json.loads(_unzip(one.content, single)["runs.json"])
    assert [s["id"] for s in spec["runs"]] == [fit_run["id"]]
    again = _rerun(single)
    assert again.returncode == 0, again.stdout + again.stderr

    missing = c.get(f"/api/workspaces/{wid}/export", params={"run": "0" * 32})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "run_not_found"

    # the command line: `rsparkhub export RUN` writes the same bundle
    cli = _cli(hub, token, tmp_path, "export", fit_run["id"][:12], "--workspace", "bundle")
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith("wrote fit.zip (") and "python3 rerun.py" in cli.stdout
    with zipfile.ZipFile(tmp_path / "fit.zip") as zf:
        assert [r["id"] for r in json.loads(zf.read("runs.json"))["runs"]] == [fit_run["id"]]


FIGURES = """\
import matplotlib.pyplot as plt
plt.plot([1, 3, 2])
plt.title("first")
plt.show()
fig, ax = plt.subplots(figsize=(4, 3))
ax.bar(["a", "b"], [2, 5])
print("drew two")
"""


async def test_python_figures_are_drawn_again_and_compared(hub: HubProcess, tmp_path: Path) -> None:
    """A Python run's matplotlib figures (the session's inline backend: one at plt.show(),
    one at the end) are drawn again by the bundle's command and compared by pixels. The
    python3 on PATH is one with matplotlib — this venv's, at the versions the record has,
    which requirements.txt pins — since the machine's own has none."""
    token = hub.make_user("pia")
    c = hub.client(token)
    async with HubClient(hub.url, token) as h:
        wid = (await h.ensure_workspace("figures"))["id"]
        await h.upload(wid, {"figs.py": FIGURES.encode()})
        async with h.attach(wid) as s:
            res = await s.run(path="figs.py", mode="run")
        assert res.ok, res
        await h.stop_session(wid)
    run = _wait_done(c, wid, res.request_id)
    r = c.get(f"/api/workspaces/{wid}/export", params={"run": run["id"]})
    assert r.status_code == 200, r.text
    folder = tmp_path / "figures"
    files = _unzip(r.content, folder)
    spec = json.loads(files["runs.json"])["runs"][0]
    assert spec["plain_command"][:2] == ["python3", "-c"], spec["plain_command"]
    assert spec["plain_command"][-1] == "figs.py"
    assert spec["expected"]["compare_plots"] is True
    assert len(spec["expected"]["plots"]) == 2
    assert "`python3 figs.py`, its figures saved as PNGs" in files["README.md"].decode()

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    env = {**PLAIN_ENV, "PATH": f"{bin_dir}:/usr/bin:/bin"}

    done = _rerun(folder, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 plots" in done.stdout and "all reproduced" in done.stdout, done.stdout

    # a taller bar: the second figure differs, the first does not
    (folder / "figs.py").write_text(FIGURES.replace("[2, 5]", "[2, 6]"))
    changed = _rerun(folder, env)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "✗ plot 2 differs in " in changed.stdout, changed.stdout
    assert "plot 1 differs" not in changed.stdout
