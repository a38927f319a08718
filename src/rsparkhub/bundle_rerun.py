"""rerun.py of an export bundle: re-run the recorded commands without the hub and compare.

Standard library only (the bundle ships it as ``rerun.py`` next to ``reprodiff.py``, and a
plain ``python3`` runs it). For each record in ``runs.json``:

1. a clean temporary directory gets the record's input files: ``inputs/<run>/<path>`` when
   the bundle keeps a version of its own for that record, else the bundle's ``<path>``;
   each file's sha256 is compared with the recorded one (a changed input is a cause);
2. the record's plain command runs there (``Rscript FILE``, ``python3 FILE``, ``bash FILE``;
   a render: ``rmarkdown::render``), stdout and stderr together;
3. ``reprodiff`` compares: status (exit code 0 ↔ ok), the printed output when the record
   says it is comparable, the files it wrote (by sha256, CSV by data, text by lines with the
   ignore patterns), and reports R/Python version differences.

Exit 0 when every record reproduced, 1 when one did not, 2 when a command could not start.
``python3 rerun.py --keep`` keeps the temporary directories; ``--only RUN`` one record.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ left in the bundle

import reprodiff  # noqa: E402  (the copy next to this file)

SKIP_WRITTEN = ("Rplots.pdf", "__pycache__/", ".Rhistory", ".RData")
# a run's plots (hub/runs/export.py: r_with_plots, py_with_plots)
PLOT_FILE = re.compile(r"^rsparkhub-plot-\d+\.png$")
TIMEOUT_S = 3600


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _inside(root: Path, rel: str) -> Path:
    p = (root / rel).resolve()
    if root.resolve() not in p.parents:
        raise ValueError(f"path {rel!r} leaves the bundle")
    return p


def _snapshot(work: Path) -> dict[str, str]:
    out = {}
    for p in work.rglob("*"):
        if p.is_file():
            out[p.relative_to(work).as_posix()] = sha256(p.read_bytes())
    return out


def _versions() -> dict[str, Any]:
    """This machine's R and Python, in the record's snapshot shape (versions only)."""
    langs: dict[str, Any] = {
        "python": {"version": ".".join(map(str, sys.version_info[:3])), "packages": []}
    }
    try:
        out = subprocess.run(
            ["Rscript", "-e", 'cat(R.version$major, ".", R.version$minor, sep = "")'],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode == 0:
            langs["r"] = {"version": out.stdout.strip(), "packages": []}
    except OSError:
        pass
    return {"languages": langs}


def run_one(run: dict[str, Any], settings: reprodiff.Settings, keep: bool) -> reprodiff.Report:
    work = Path(tempfile.mkdtemp(prefix=f"rerun-{run['id'][:12]}-"))
    actual_inputs: dict[str, str] = {}
    for f in run["inputs"]:
        own = HERE / "inputs" / run["id"][:12] / f["path"]
        src = own if own.exists() else _inside(HERE, f["path"])
        if not src.is_file():
            continue  # missing: reprodiff says so
        dest = _inside(work, f["path"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        actual_inputs[f["path"]] = sha256(dest.read_bytes())
    before = _snapshot(work)
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "PYTHONWARNINGS": "ignore:FigureCanvasAgg is non-interactive",
    }
    try:
        proc = subprocess.run(
            run["plain_command"],
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=TIMEOUT_S,
        )
    except OSError as exc:
        raise SystemExit(f"cannot run {run['plain_command'][0]}: {exc}") from None
    exp = run["expected"]
    written: dict[str, bytes | None] = {}
    plots: list[reprodiff.Plot] = []
    for path, digest in sorted(_snapshot(work).items()):
        if PLOT_FILE.match(path) and exp.get("compare_plots"):
            plots.append(reprodiff.Plot("image/png", (work / path).read_bytes()))
        elif before.get(path) != digest and not any(s in path for s in SKIP_WRITTEN):
            written[path] = (work / path).read_bytes()
    expected_plots = [
        reprodiff.Plot(p["mime"], (HERE / p["file"]).read_bytes())
        for p in (exp["plots"] if exp.get("compare_plots") else [])
    ]
    expected_files: dict[str, bytes | None] = {}
    for path, info in exp["files"].items():
        if info.get("compare", True) and info.get("file"):
            expected_files[path] = (HERE / info["file"]).read_bytes()
        else:
            expected_files[path] = None  # to be written, not compared byte for byte
            if path in written:
                written[path] = None
    transcript = None
    if exp.get("compare_transcript") and exp.get("transcript"):
        transcript = (HERE / exp["transcript"]).read_text(encoding="utf-8")
    expected = reprodiff.Outputs(
        status=run["status"],
        transcript=transcript,
        plots=expected_plots,
        files=expected_files,
        inputs={f["path"]: f["sha256"] for f in run["inputs"]},
        environment=run.get("environment"),
    )
    actual = reprodiff.Outputs(
        status="ok" if proc.returncode == 0 else "error",
        transcript=proc.stdout.decode("utf-8", "replace") if transcript is not None else None,
        plots=plots,
        files=written,
        inputs=actual_inputs,
        environment=_versions() if run.get("environment") else None,
    )
    if expected.environment and actual.environment:  # the languages this machine was asked
        have = actual.environment["languages"]
        langs = expected.environment.get("languages") or {}
        expected.environment = {"languages": {k: v for k, v in langs.items() if k in have}}
    report = reprodiff.compare(expected, actual, settings)
    if keep:
        print(f"  (kept {work})")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    keep = "--keep" in args
    only = args[args.index("--only") + 1] if "--only" in args else None
    spec = json.loads((HERE / "runs.json").read_text(encoding="utf-8"))
    settings = reprodiff.Settings(
        ignore=spec.get("ignore", reprodiff.DEFAULT_IGNORE),
        plot_threshold=spec.get("plot_threshold", 0.001),
    )
    ok = True
    for run in spec["runs"]:
        if only and not run["id"].startswith(only):
            continue
        if not run.get("plain_command"):
            print(f"{run['command']}  ({run['id'][:12]}): not re-run ({run.get('not_rerun')})")
            continue
        print(f"{run['command']}  ({run['id'][:12]}): {shlex.join(run['plain_command'])}")
        report = run_one(run, settings, keep)
        for line in report.text().splitlines():
            print("  " + line)
        ok = ok and report.reproduced
    print("all reproduced" if ok else "NOT all reproduced")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
