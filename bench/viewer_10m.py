"""The data viewer's engine on a 10,000,000 × 10 frame, kernel-side, the previous
implementation and this one side by side in one run.

Each (language, implementation) runs in a fresh process: Python imports the ``rsparkhub``
package of that implementation (the previous one extracted with ``git show BASELINE:…`` into
a temporary directory), R ``sys.source()``-s that implementation's ``rsparkhub.R`` into an
attached ``tools:rsparkhub``. The frame is the one of ``bench/introspection.py`` (integer,
3 numeric, integer, factor/category, 2 character, Date/datetime64, logical). Every cell is
the time of ``call("view_rows", …)`` inside the process (JSON written to a file included);
no hub, agent or kernel protocol. Sorts and filters alternate between two equivalent
queries so each repetition recomputes. The two implementations must give the same
``total`` and the same first page for every query (checked; a difference is printed).

    .venv/bin/python bench/viewer_10m.py                  # 10M rows, Python and R, 2 runs
    .venv/bin/python bench/viewer_10m.py --rows 1000000 --runs 1
    .venv/bin/python bench/viewer_10m.py --record         # also rewrite §5b of RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from introspection import PY_VIEW, R_VIEW  # noqa: E402

BASELINE = "6fb6e05"  # before pykernel_engine / viewer_engine.R (pandas+numpy+polars, base R)
GOAL_S = 1.0
GOAL_FIRST_S = 0.1
TITLE = "5b. Data viewer engine, 10,000,000 × 10 (`bench/viewer_10m.py`)"

QUERIES: list[tuple[str, str, list[dict[str, Any]]]] = [
    ("first", "first page (100 rows, no sort)", [{}]),
    ("deep", "page at row n/2 (no sort)", [{"offset": -1}]),
    (
        "sort1",
        "sort by 1 numeric column",
        [
            {"sort": [{"column": "x"}]},
            {"sort": [{"column": "x", "descending": True}]},
        ],
    ),
    (
        "cached",
        "second page of that sort (cached index)",
        [
            {"sort": [{"column": "x", "descending": True}], "offset": 100},
        ],
    ),
    (
        "sort2",
        "sort by factor + numeric",
        [
            {"sort": [{"column": "g"}, {"column": "y", "descending": True}]},
            {"sort": [{"column": "g", "descending": True}, {"column": "y"}]},
        ],
    ),
    (
        "sortc",
        "sort by a character column with NA",
        [
            {"sort": [{"column": "w"}, {"column": "id", "descending": True}]},
            {"sort": [{"column": "w", "descending": True}, {"column": "id"}]},
        ],
    ),
    (
        "between",
        "filter `between` on a numeric column",
        [
            {"filters": [{"column": "x", "op": "between", "min": 0.25, "max": 0.5}]},
            {"filters": [{"column": "x", "op": "between", "min": 0.5, "max": 0.75}]},
        ],
    ),
    (
        "contains",
        "filter `contains` on a character column",
        [
            {"filters": [{"column": "s", "op": "contains", "value": "0042"}]},
            {"filters": [{"column": "s", "op": "contains", "value": "0043"}]},
        ],
    ),
    ("search", "search (all 10 columns), digits", [{"search": "00042"}, {"search": "00043"}]),
    ("searchw", "search (all 10 columns), a word", [{"search": "wolf"}, {"search": "Fox"}]),
    (
        "combo",
        "filter + search + sort",
        [
            {
                "filters": [{"column": "k", "op": "lt", "value": 500}],
                "search": "frog",
                "sort": [{"column": "d", "descending": True}],
            },
            {
                "filters": [{"column": "k", "op": "ge", "value": 500}],
                "search": "frog",
                "sort": [{"column": "d"}],
            },
        ],
    ),
]

PY_WORKER = r"""
import json, os, sys, tempfile, time
sys.path.insert(0, SRC)
from rsparkhub.agent import pykernel
ns = {}
exec(BUILD, ns)
out = tempfile.mktemp(suffix=".json")
def call(method, args):
    t0 = time.perf_counter()
    pykernel.call(method, json.dumps(args), out, ns=ns)
    dt = time.perf_counter() - t0
    with open(out, encoding="utf-8") as fh:
        doc = json.load(fh)
    os.unlink(out)
    return dt, doc
res = {}
for key, variants in QUERIES:
    dt, doc = call("view_open", {"name": "df"})
    assert doc["ok"], doc
    vid = doc["result"]["view_id"]
    if key == "cached":
        call("view_rows", {"view_id": vid, "offset": 0, "limit": 100, "sort": variants[0]["sort"]})
    times, answers = [], []
    for i in range(REPS):
        q = dict(variants[i % len(variants)])
        off = q.pop("offset", 0)
        args = {"view_id": vid, "offset": NROW // 2 if off == -1 else off, "limit": 100, **q}
        dt, doc = call("view_rows", args)
        if not doc["ok"]:
            times, answers = str(doc["error"]), []
            break
        times.append(dt)
        r = doc["result"]
        answers.append({"total": r["total"], "rows": r["rows"][:100], "labels": r["row_labels"]})
    res[key] = {"times": times, "answers": answers[:len(variants)]}
    call("view_close", {"view_id": vid})
print("RESULT " + json.dumps(res))
"""

R_WORKER = r"""
local({ e <- attach(NULL, name = "tools:rsparkhub"); sys.source(SRC, envir = e, keep.source = FALSE) })
BUILD
out <- tempfile(fileext = ".json")
call1 <- function(method, args) {
  t0 <- proc.time()[[3L]]
  .rsparkhub$call(method, jsonlite::toJSON(args, auto_unbox = TRUE, null = "null", digits = NA), out)
  dt <- proc.time()[[3L]] - t0
  doc <- jsonlite::fromJSON(out, simplifyVector = FALSE)
  list(dt = dt, doc = doc)
}
qs <- jsonlite::fromJSON(QUERIES_JSON, simplifyVector = FALSE)
res <- list()
for (q in qs) {
  key <- q[[1L]]; variants <- q[[2L]]
  r <- call1("view_open", list(name = "df"))
  vid <- r$doc$result$view_id
  if (key == "cached")
    call1("view_rows", list(view_id = vid, offset = 0L, limit = 100L, sort = variants[[1L]]$sort))
  times <- list(); answers <- list()
  for (i in seq_len(REPS)) {
    v <- variants[[(i - 1L) %% length(variants) + 1L]]
    off <- if (is.null(v$offset)) 0L else v$offset
    v$offset <- NULL
    args <- c(list(view_id = vid, offset = if (off == -1L) NROW %/% 2L else off, limit = 100L), v)
    r <- call1("view_rows", args)
    if (!isTRUE(r$doc$ok)) { times <- r$doc$error$message; answers <- list(); break }
    times[[length(times) + 1L]] <- r$dt
    if (length(answers) < length(variants))
      answers[[length(answers) + 1L]] <- list(total = r$doc$result$total,
        rows = r$doc$result$rows, labels = r$doc$result$row_labels)
  }
  res[[key]] <- list(times = times, answers = answers)
  call1("view_close", list(view_id = vid))
}
cat("RESULT ", jsonlite::toJSON(res, auto_unbox = TRUE, null = "null", digits = NA), "\n", sep = "")
"""


def baseline_tree(rev: str, into: Path) -> Path:
    """The ``src`` tree of ``rev`` (only ``rsparkhub/``), extracted with git."""
    files = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, "src/rsparkhub"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        if not (f.endswith(".py") or f.endswith(".R")):
            continue
        data = subprocess.run(
            ["git", "show", f"{rev}:{f}"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        p = into / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return into / "src"


def run_worker(lang: str, src: Path, rows: int, reps: int) -> dict[str, Any]:
    queries = [(k, v) for k, _, v in QUERIES]
    if lang == "python":
        code = (
            f"SRC = {str(src)!r}\nBUILD = {PY_VIEW.replace('{n}', str(rows))!r}\n"
            f"QUERIES = {queries!r}\nREPS = {reps}\nNROW = {rows}\n" + PY_WORKER
        )
        cmd = [sys.executable, "-c", code]
    else:
        code = (
            R_WORKER.replace("SRC", json.dumps(str(src / "rsparkhub/agent/r/rsparkhub.R")))
            .replace("BUILD", R_VIEW.replace("{n}", str(rows)))
            .replace("QUERIES_JSON", json.dumps(json.dumps(queries)))
            .replace("REPS", str(reps))
            .replace("NROW", f"{rows}L")
        )
        with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
            fh.write(code)
        cmd = ["Rscript", "--vanilla", fh.name]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise RuntimeError(f"{lang} worker failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def machine() -> dict[str, str]:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception:
            return "?"

    import numpy
    import pandas
    import polars

    rver = out(
        [
            "Rscript",
            "--vanilla",
            "-e",
            'cat(R.version.string, "; data.table", as.character(packageVersion("data.table")))',
        ]
    )
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "numpy / pandas / polars": f"{numpy.__version__} / {pandas.__version__} / {polars.__version__}",
        "r": rver,
        "git": out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "baseline": BASELINE,
    }


def fmt(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x >= 0.1 else f"{x * 1000:.1f} ms"


def cell(runs: list[Any]) -> str:
    """Median over reps per run; the runs side by side as the spread."""
    if any(isinstance(r, str) for r in runs):
        return next(r for r in runs if isinstance(r, str))[:40]
    meds = [statistics.median(r) for r in runs if r]
    if not meds:
        return "–"
    if len(meds) == 1:
        return fmt(meds[0])
    return f"{fmt(statistics.median(meds))} ({' / '.join(fmt(m) for m in meds)})"


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = []
    for key in old:
        a, b = old[key]["answers"], new.get(key, {}).get("answers")
        if bool(a) != bool(b):  # an error on one side (its message is the cell)
            diffs.append(f"{key}: answered by {'the previous' if a else 'this'} one only")
        elif a and b and a != b:
            for qa, qb in zip(a, b, strict=False):
                if qa != qb:
                    what = "total" if qa["total"] != qb["total"] else "rows"
                    diffs.append(f"{key}: {what} differ ({qa['total']} vs {qb['total']})")
                    break
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--reps", type=int, default=3, help="view_rows calls per query and run")
    ap.add_argument("--runs", type=int, default=2, help="whole runs (the spread)")
    ap.add_argument("--langs", default="python,r")
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    langs = args.langs.split(",")
    facts = machine()
    facts["baseline"] = args.baseline
    load0 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    t0 = time.time()
    impls = ["new"] if args.no_baseline else ["old", "new"]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    diffs: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        old_src = baseline_tree(args.baseline, Path(tmp)) if not args.no_baseline else None
        for run in range(args.runs):
            for lang in langs:
                for impl in impls:
                    src = ROOT / "src" if impl == "new" else old_src
                    assert src is not None
                    print(f"run {run + 1}: {lang} {impl} …", flush=True)
                    results.setdefault((lang, impl), []).append(
                        run_worker(lang, src, args.rows, args.reps)
                    )
                if not args.no_baseline:
                    diffs += [
                        f"{lang}, run {run + 1}: {d}"
                        for d in compare(results[(lang, "old")][-1], results[(lang, "new")][-1])
                    ]
    load1 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    facts["load average (1/5/15 min) before → after"] = f"{load0} → {load1}"
    facts["rows × columns"] = f"{args.rows:,} × 10"
    facts["reps × runs"] = f"{args.reps} × {args.runs}"
    names = {"python": "Python", "r": "R"}
    head = ["measurement"] + [
        f"{names[lg]}: {'before' if i == 'old' else 'after'}" for lg in langs for i in impls
    ]
    body = []
    for key, label, _ in QUERIES:
        row = [label]
        for lg in langs:
            for impl in impls:
                row.append(cell([r[key]["times"] for r in results[(lg, impl)]]))
        body.append(row)
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    table_md = "\n".join(
        [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in body]
    )
    fw = max(len(k) for k in facts)
    facts_md = "\n".join(
        [f"| {'fact'.ljust(fw)} | value |", f"|{'-' * (fw + 2)}|-------|"]
        + [f"| {k.ljust(fw)} | {v} |" for k, v in facts.items()]
    )
    worst = {}
    for lg in langs:
        meds = [
            statistics.median(statistics.median(r[k]["times"]) for r in results[(lg, "new")])
            for k, _, _ in QUERIES
            if all(isinstance(r[k]["times"], list) and r[k]["times"] for r in results[(lg, "new")])
        ]
        failed = len(QUERIES) - len(meds)  # a query that errored meets no goal
        first = statistics.median(
            statistics.median(r["first"]["times"]) for r in results[(lg, "new")]
        )
        worst[lg] = (max(meds) if not failed else float("inf"), first, failed)
    goals = [
        (
            f"- {names[lg]}: slowest sort/filter/search {fmt(w)} — {'meets' if w < GOAL_S else '**misses**'} the goal < 1 s; "
            if not n
            else f"- {names[lg]}: **{n} queries failed** — the goal < 1 s is missed; "
        )
        + f"first page {fmt(f)} — {'meets' if f < GOAL_FIRST_S else '**misses**'} the goal < 100 ms"
        for lg, (w, f, n) in worst.items()
    ]
    same = (
        "- The two implementations gave the same totals and first pages for every query."
        if not diffs
        else "- Differences between the implementations:\n" + "\n".join(f"  - {d}" for d in diffs)
    )
    text = (
        f"{facts_md}\n\nCells: median of {args.reps} `view_rows` calls, kernel-side (JSON written to a file "
        f"included), over {args.runs} runs: overall median (run 1 / run 2 …). **before** = `{args.baseline}` "
        "(pandas/numpy sorts and masks, numbers searched as text formatted by polars; base R), "
        "**after** = this tree (`pykernel_engine.py`, `r/viewer_engine.R` + data.table).\n\n"
        f"{table_md}\n\n**Goals**\n\n"
        + "\n".join(goals)
        + "\n"
        + (same if not args.no_baseline else "")
    )
    print(text)
    print(f"ran in {time.time() - t0:.0f} s")
    if args.record:
        record(text, time.time() - t0)


def record(text: str, wall: float) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    doc = path.read_text()
    start = doc.find(f"## {TITLE}")
    section = f"## {TITLE} — ran in {wall:.0f} s\n\nRecorded by `bench/viewer_10m.py --record`:\n\n{text}\n"
    if start == -1:
        anchor = doc.find("## 6. ")
        doc = doc[:anchor] + section + "\n" + doc[anchor:] if anchor != -1 else doc + "\n" + section
    else:
        end = doc.find("\n## ", start + 3)
        doc = doc[:start] + section + (doc[end + 1 :] if end != -1 else "")
    path.write_text(doc)


if __name__ == "__main__":
    main()
