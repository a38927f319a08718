"""Export bundles (``GET /api/workspaces/{id}/export``): one run record, or the workspace's
last run of each file, as a zip that re-runs without the hub, laid out the way repo2docker
(and so Binder) reads a repository. docs/reproducibility.md has the layout; in short:

* the input files at their recorded versions at the top (a second record that ran with other
  versions of some files gets those under ``inputs/<run>/``);
* ``requirements.txt`` — the Python packages the workspace's ``.py`` files import (their
  top-level imports, mapped to distributions of the record's environment), pinned to the
  recorded versions. Not every package of the session: the kernel's own tooling (ipykernel,
  jupyter_client …) is not what the code needs, and pinning it would tie the bundle to
  this hub's image. Their dependencies are left to pip;
* ``apt.txt`` (Debian packages: ``r-base-core``, ``r-cran-<name>`` for each R package the
  code loads, ``pandoc`` for a render), ``install.R`` (installs only what apt did not, from
  the mirror in ``RSPARKHUB_CRAN``: CRAN is not reachable from this hub's machine) and
  ``runtime.txt``;
* a ``Dockerfile`` (FROM debian:bookworm) that installs all that and runs ``rerun.py``;
* ``runs.json`` (commands, the plain command each maps to, inputs with sha256, expected
  outputs with hashes, what is compared), ``expected/<run>/`` (transcript, plots, files),
  ``reprodiff.py``, ``rerun.py`` and a ``README.md``.
"""

from __future__ import annotations

import ast
import asyncio
import io
import json
import re
import shlex
import sys
import zipfile
from datetime import UTC, datetime
from importlib import resources
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rsparkhub import reprodiff
from rsparkhub.hub.blobs import BlobStore
from rsparkhub.hub.db.models import Run, Workspace
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.runs.outputs import RecordedOutputs, recorded_outputs
from rsparkhub.hub.runs.queries import get_run

MAX_RUNS = 20  # a workspace export: the last run of at most this many files
MAX_SCANNED = 2000  # … among this many newest records
PLOT_FILES = "rsparkhub-plot-%03d.png"  # what rerun.py collects as an R run's plots
R_PLOT_RES = 120  # IRkernel's repr.plot.res: the resolution of the session's R plots
# the bundle's own names: a workspace file called so goes under inputs/<run>/ instead
RESERVED = ("runs.json", "rerun.py", "reprodiff.py", "expected/", "inputs/")
R_BASE = {
    "base", "compiler", "datasets", "graphics", "grDevices", "grid", "methods", "parallel",
    "splines", "stats", "stats4", "tcltk", "tools", "utils",
}  # fmt: skip
# import names whose distribution is called otherwise
PY_ALIASES = {
    "sklearn": "scikit-learn", "PIL": "Pillow", "yaml": "PyYAML", "cv2": "opencv-python",
    "bs4": "beautifulsoup4", "dateutil": "python-dateutil", "skimage": "scikit-image",
}  # fmt: skip
R_USES = re.compile(
    r"(?:\b(?:library|require|requireNamespace)\(\s*[\"']?([A-Za-z][A-Za-z0-9.]*)"
    r"|\b([A-Za-z][A-Za-z0-9.]*):::?)"
)


def png_size(data: bytes) -> tuple[int, int] | None:
    """A PNG's width and height, from its header."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def r_with_plots(path: str, size: tuple[int, int]) -> list[str]:
    """``Rscript`` running ``path`` as the hub's run mode does (``source(…, echo = FALSE,
    print.eval = TRUE)``, which prints what ``Rscript FILE`` prints) with its plots drawn
    as IRkernel draws them: cairo PNGs at the recorded size and 120 dpi (IRkernel's
    ``repr.plot.res``), one file per page, so rerun.py can compare them by pixels."""
    w, h = size
    code = (
        f'png("{PLOT_FILES}", width = {w}, height = {h}, res = {R_PLOT_RES}, type = "cairo"); '
        f"source({json.dumps(path)}, echo = FALSE, print.eval = TRUE)"
    )
    return ["Rscript", "-e", code]


# A Python run's figures as the session's inline backend (matplotlib_inline) showed them:
# at each plt.show() and at the end, every open figure as a PNG at the figure's own dpi,
# its face and edge colours and a tight bounding box (IPython's print_figure), then closed.
PY_PLOTS = """\
import os, runpy, sys
path = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(path))
os.environ.setdefault("MPLBACKEND", "Agg")
try:
    import matplotlib.pyplot as plt
except ImportError:
    plt = None
n = [0]
def show(*args, **kwargs):
    for num in plt.get_fignums():
        fig = plt.figure(num)
        n[0] += 1
        fig.savefig("rsparkhub-plot-%03d.png" % n[0], format="png", dpi=fig.dpi,
                    facecolor=fig.get_facecolor(), edgecolor=fig.get_edgecolor(),
                    bbox_inches="tight")
        plt.close(fig)
if plt is not None:
    plt.show = show
runpy.run_path(path, run_name="__main__")
if plt is not None:
    show()
"""


def py_with_plots(path: str) -> list[str]:
    """``python3`` running ``path`` as ``python3 FILE`` does, its figures written as the
    session's inline backend drew them (``PY_PLOTS``), so rerun.py can compare them."""
    return ["python3", "-c", PY_PLOTS, path]


def plain_command(
    run: Run, engine: str | None, plot_size: tuple[int, int] | None = None
) -> tuple[list[str] | None, bool, str]:
    """How a record maps to a plain command: (argv or None, whether its printed output is
    comparable with the hub's transcript, why not). A run with PNG plots (``plot_size``
    the first one's) draws them as the session did: ``r_with_plots``, ``py_with_plots``."""
    path = run.path
    if run.kind == "render":
        if engine == "rmarkdown":
            code = f"rmarkdown::render({json.dumps(path)}, quiet = TRUE)"
            if run.request and run.request.get("output"):
                code = (
                    f"rmarkdown::render({json.dumps(path)}, quiet = TRUE, output_file = "
                    f"{json.dumps(PurePosixPath(run.request['output']).name)}, output_dir = "
                    f"{json.dumps(str(PurePosixPath(run.request['output']).parent))})"
                )
            return ["Rscript", "-e", code], False, "a render's log is not its output"
        return None, False, f"the {engine or 'unknown'} engine has no plain command here"
    argv = {"r": ["Rscript", path], "python": ["python3", path], "bash": ["bash", path]}.get(
        run.language or ""
    )
    if argv is None:
        return None, False, f"no plain command for language {run.language}"
    if run.language == "r" and plot_size is not None:
        argv = r_with_plots(path, plot_size)
    if run.language == "python" and plot_size is not None:
        argv = py_with_plots(path)
    if run.kind == "source":
        # the hub's source mode echoes each expression with a prompt, as an interactive
        # session does; a plain interpreter prints only the output
        return argv, False, "source mode echoes the code; a plain interpreter does not"
    if run.status != "ok":
        return argv, False, "an error's traceback differs between a kernel and a plain interpreter"
    return argv, True, ""


def python_requirements(files: dict[str, bytes], env: dict[str, Any] | None) -> list[str]:
    """``name==version`` for each distribution the workspace's Python files import."""
    recorded = {
        re.sub(r"[-_.]+", "-", str(p["name"])).lower(): (str(p["name"]), str(p["version"]))
        for p in ((env or {}).get("languages", {}).get("python", {}).get("packages") or [])
    }
    local = {PurePosixPath(p).stem for p in files if p.endswith(".py")}
    wanted: set[str] = set()
    for path, data in files.items():
        if not path.endswith(".py"):
            continue
        try:
            tree = ast.parse(data)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    wanted.add(PY_ALIASES.get(top, top))
    out = []
    for name in sorted(wanted, key=str.lower):
        hit = recorded.get(re.sub(r"[-_.]+", "-", name).lower())
        out.append(f"{hit[0]}=={hit[1]}" if hit else f"{name}  # not in the recorded environment")
    return out


def r_packages(
    files: dict[str, bytes], env: dict[str, Any] | None, renders: bool
) -> dict[str, str]:
    """The R packages the workspace's R code loads (name → recorded version, or "")."""
    recorded = {
        str(p["name"]): str(p["version"])
        for p in ((env or {}).get("languages", {}).get("r", {}).get("packages") or [])
    }
    names: set[str] = {"rmarkdown", "knitr"} if renders else set()
    for path, data in files.items():
        if path.lower().endswith((".r", ".rmd", ".qmd", ".rnw")):
            for a, b in R_USES.findall(data.decode("utf-8", "replace")):
                names.add(a or b)
    return {n: recorded.get(n, "") for n in sorted(names - R_BASE, key=str.lower)}


def _env_summary(env: dict[str, Any] | None) -> dict[str, Any] | None:
    if not env:
        return None
    langs = env.get("languages") or {}
    return {
        "languages": {k: {"version": v.get("version"), "packages": []} for k, v in langs.items()}
    }


async def _select(db: AsyncSession, workspace_id: str, run_id: str | None) -> list[Run]:
    if run_id is not None:
        return [await get_run(db, workspace_id, run_id)]
    rows = (
        await db.execute(
            select(Run)
            .where(Run.workspace_id == workspace_id, Run.status != "running")
            .order_by(Run.started_at.desc())
            .limit(MAX_SCANNED)
        )
    ).scalars()
    latest: dict[str, Run] = {}
    for r in rows:
        if r.path not in latest and len(latest) < MAX_RUNS:
            latest[r.path] = r
    if not latest:
        raise ApiError(
            404,
            "no_runs",
            "This workspace has no finished run records to export: Run, Source or Render a "
            "file first.",
        )
    return sorted(latest.values(), key=lambda r: r.started_at)


async def export_bundle(
    db: AsyncSession, blobs: BlobStore, ws: Workspace, run_id: str | None
) -> bytes:
    runs = await _select(db, ws.id, run_id)
    if any(r.status == "running" for r in runs):
        raise ApiError(409, "run_running", "This run is still running; export it once it ended.")
    recorded = [await recorded_outputs(db, blobs, r) for r in runs]
    entries: dict[str, bytes] = {}
    # the newest record's inputs at the top; another record's differing versions apart
    top: dict[str, str] = {}
    for rec in reversed(recorded):
        for f in rec.inputs:
            path, sha = str(f["path"]), str(f["sha256"])
            reserved = path in RESERVED or path.startswith(RESERVED[3:])
            if path not in top and not reserved and blobs.exists(sha):
                top[path] = sha
                entries[path] = await blobs.get(sha)
    specs = []
    for rec in recorded:
        specs.append(await _run_spec(rec, top, entries, blobs))
    envs = [rec.environment for rec in recorded if rec.environment]
    env = envs[-1] if envs else None
    renders = any(r.kind == "render" for r in runs)
    inputs = {p: entries[p] for p in top}
    _environment_files(entries, inputs, env, renders, runs)
    uses_r = any(r.language == "r" or r.kind == "render" for r in runs)
    spec = {
        "format": 1,
        "workspace": ws.name,
        "exported_at": datetime.now(UTC).isoformat(),
        "ignore": reprodiff.DEFAULT_IGNORE,
        "plot_threshold": reprodiff.Settings().plot_threshold,
        "runs": specs,
    }
    entries["runs.json"] = json.dumps(spec, indent=2).encode()
    entries["reprodiff.py"] = await asyncio.to_thread(_source, "reprodiff.py")
    entries["rerun.py"] = await asyncio.to_thread(_source, "bundle_rerun.py")
    # a workspace's own Dockerfile, README.md or environment files win over generated ones
    entries.setdefault("Dockerfile", _dockerfile(uses_r).encode())
    entries.setdefault("README.md", _readme(ws, specs, uses_r).encode())
    return await asyncio.to_thread(_zip, entries)


async def _run_spec(
    rec: RecordedOutputs, top: dict[str, str], entries: dict[str, bytes], blobs: BlobStore
) -> dict[str, Any]:
    run, short = rec.run, rec.run.id[:12]
    for f in rec.inputs:
        path, sha = str(f["path"]), str(f["sha256"])
        if top.get(path) != sha and blobs.exists(sha):
            entries[f"inputs/{short}/{path}"] = await blobs.get(sha)
    engine = next((d.get("engine") for d in rec.documents if d.get("engine")), None)
    first_png = next((p.data for p in rec.plots if p.mime == "image/png"), None)
    size = png_size(first_png) if first_png else None
    argv, comparable, why = plain_command(run, engine, size)
    base = f"expected/{short}"
    expected: dict[str, Any] = {
        "files": {},
        "plots": [],
        "compare_transcript": False,
        # R and matplotlib draw as in the session again (r_with_plots, py_with_plots);
        # other plots (SVG, a render's) are kept only
        "compare_plots": bool(
            argv
            and argv[:2] in (["Rscript", "-e"], ["python3", "-c"])
            and size
            and run.kind != "render"
        ),
    }
    if rec.transcript is not None:
        entries[f"{base}/transcript.txt"] = rec.transcript.encode()
        expected["transcript"] = f"{base}/transcript.txt"
        expected["transcript_sha256"] = run.transcript_sha256
        expected["compare_transcript"] = comparable and argv is not None
    if not expected["compare_transcript"]:
        expected["transcript_not_compared"] = why or "the transcript was not kept"
    for i, plot in enumerate(rec.plots, start=1):
        ext = {"image/png": "png", "image/svg+xml": "svg"}.get(plot.mime, "bin")
        entries[f"{base}/plots/{i}.{ext}"] = plot.data
        expected["plots"].append({"file": f"{base}/plots/{i}.{ext}", "mime": plot.mime})
    documents = {d.get("path") for d in rec.documents}
    for path, data in rec.files.items():
        info: dict[str, Any] = {"sha256": rec.file_sha256.get(path), "compare": True}
        if data is not None:
            entries[f"{base}/files/{path}"] = data
            info["file"] = f"{base}/files/{path}"
        if path in documents or data is None:
            info["compare"] = False  # a rendered document embeds what changes per render
        expected["files"][path] = info
    return {
        "id": run.id,
        "command": run.command,
        "kind": run.kind,
        "language": run.language,
        "path": run.path,
        "request": run.request,
        "plain_command": argv,
        **({} if argv else {"not_rerun": why}),
        "status": run.status,
        "started_at": run.started_at.isoformat(),
        "inputs": rec.inputs,
        "expected": expected,
        "environment": _env_summary(rec.environment),
    }


def _environment_files(
    entries: dict[str, bytes],
    inputs: dict[str, bytes],
    env: dict[str, Any] | None,
    renders: bool,
    runs: list[Run],
) -> None:
    reqs = python_requirements(inputs, env)
    if reqs:
        text = "# What the workspace's Python files import, at the recorded versions\n"
        entries.setdefault("requirements.txt", (text + "\n".join(reqs) + "\n").encode())
    uses_r = any(r.language == "r" or r.kind == "render" for r in runs)
    langs = (env or {}).get("languages") or {}
    apt = ["r-base-core"] if uses_r else []
    if uses_r:
        pkgs = r_packages(inputs, env, renders)
        apt += [f"r-cran-{n.lower()}" for n in pkgs]
        if renders:
            apt.append("pandoc")
        lines = ", ".join(f'"{n}" = "{v}"' for n, v in pkgs.items())
        entries.setdefault("install.R", _INSTALL_R.replace("PKGS", lines).encode())
        r_version = str((langs.get("r") or {}).get("version") or "4.2")
        day = min(r.started_at for r in runs).strftime("%Y-%m-%d")
        entries.setdefault(
            "runtime.txt", f"r-{'.'.join(r_version.split('.')[:2])}-{day}\n".encode()
        )
    else:
        py = str((langs.get("python") or {}).get("version") or "3")
        entries.setdefault("runtime.txt", f"python-{'.'.join(py.split('.')[:2])}\n".encode())
    if apt:
        entries.setdefault("apt.txt", ("\n".join(apt) + "\n").encode())


_INSTALL_R = """\
# The R packages this bundle's code loads, with the versions the record ran with.
# apt.txt installs them from Debian (r-cran-*); this installs only what is still missing,
# from the CRAN (or Posit Package Manager) mirror in RSPARKHUB_CRAN.
pkgs <- c(PKGS)
missing <- setdiff(names(pkgs), rownames(installed.packages()))
if (length(missing)) {
  install.packages(missing, repos = Sys.getenv("RSPARKHUB_CRAN", "https://cloud.r-project.org"))
}
have <- installed.packages()[, "Version"]
for (p in names(pkgs)) if (nzchar(pkgs[[p]]) && p %in% names(have) && have[[p]] != pkgs[[p]])
  message(sprintf("note: %s %s installed, the record ran with %s", p, have[[p]], pkgs[[p]]))
"""


def _dockerfile(uses_r: bool) -> str:
    r = (
        "RUN if [ -f apt.txt ]; then apt-get update && xargs -a apt.txt apt-get install -y "
        "--no-install-recommends; fi\nRUN if [ -f install.R ]; then Rscript install.R; fi\n"
        if uses_r
        else ""
    )
    return f"""\
# Rebuilds the environment the recorded runs used and re-runs them: docker build -t rerun . &&
# docker run --rm rerun   (exit 0: every run reproduced, 1: not)
FROM debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \\
    python3-pip ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /bundle
COPY . /bundle
{r}RUN python3 -m venv /opt/venv && if [ -f requirements.txt ]; then \\
    /opt/venv/bin/pip install -r requirements.txt; fi
ENV PATH=/opt/venv/bin:$PATH
CMD ["python3", "rerun.py"]
"""


def _readme(ws: Workspace, specs: list[dict[str, Any]], uses_r: bool) -> str:
    lines = [
        f"# {ws.name}: recorded runs, re-runnable",
        "",
        "Exported by rsparkhub. The files are at the versions the runs below used.",
        "",
        "Re-run and compare, with plain `Rscript`/`python3`/`bash` (no hub):",
        "",
        "    python3 rerun.py        # exit 0: every run reproduced; 1: not, with the causes",
        "",
        "or rebuild the environment first: `docker build -t rerun . && docker run --rm rerun`",
        "(repo2docker/Binder read `requirements.txt`, `apt.txt`, `install.R`, `runtime.txt`).",
        "",
        "| run | command | plain command | compared |",
        "|---|---|---|---|",
    ]
    for s in specs:
        argv = s["plain_command"]
        plain = f"`{shlex.join(argv)}`" if argv else "(not re-run)"
        if argv and argv[:2] == ["python3", "-c"]:  # PY_PLOTS: many lines, not for a table
            plain = f"`python3 {shlex.quote(argv[-1])}`, its figures saved as PNGs"
        what = ["status", "inputs", "files"]
        if s["expected"]["compare_transcript"]:
            what.insert(2, "printed output")
        if s["expected"]["compare_plots"]:
            what.append("plots")
        lines.append(f"| {s['id'][:12]} | `{s['command']}` | {plain} | {', '.join(what)} |")
    lines += [
        "",
        "Plots are compared pixel by pixel when the session drew them as PNGs: R's on a cairo "
        "PNG device of the recorded size, matplotlib's figures saved at each `plt.show()` and "
        "at the end as the session's inline backend showed them (runs.json has the exact "
        "command). Not compared here: other plots (SVG, a render's; kept in "
        "`expected/<run>/plots/` to look at), rendered documents "
        "(written, not compared byte for byte), and the printed output of source-mode runs "
        "and of runs that failed (the hub echoes code and formats tracebacks differently). "
        "Package versions are pinned in requirements.txt/install.R; rerun.py reports "
        "R/Python version differences without failing. See runs.json for each run's details.",
        "",
    ]
    if uses_r:
        lines += ["R packages come from Debian (`apt.txt`); `install.R` fills gaps.", ""]
    return "\n".join(lines)


def _source(name: str) -> bytes:
    return resources.files("rsparkhub").joinpath(name).read_bytes()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(entries):
            zf.writestr(name, entries[name])
    return buf.getvalue()
