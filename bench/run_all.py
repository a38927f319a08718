"""Run every benchmark and rewrite bench/RESULTS.md.

Each benchmark runs as its own subprocess (bounded by a timeout) and writes its data as
JSON; this script collects the tables, adds the machine facts and the goal verdicts, and
keeps the hand-written notes between ``<!-- notes:begin -->`` and ``<!-- notes:end -->``
of the previous RESULTS.md.

Usage: .venv/bin/python bench/run_all.py [--quick] [--only first_result,memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _hub import machine_facts, table  # noqa: E402

RESULTS = HERE / "RESULTS.md"
NOTES_BEGIN, NOTES_END = "<!-- notes:begin -->", "<!-- notes:end -->"

# (name, args for a full run, args for --quick, timeout s)
BENCHES: list[tuple[str, list[str], list[str], int]] = [
    ("first_result", ["--n", "5"], ["--n", "2"], 900),
    ("exec_overhead", ["--n", "200"], ["--n", "40"], 900),
    ("memory", ["--reps", "3"], ["--reps", "1"], 600),
    (
        "big_output",
        ["--sizes", "5,20,50,100", "--langs", "python", "--flushy", "2,5"],
        ["--sizes", "5,20", "--langs", "python", "--flushy", "1"],
        900,
    ),
    ("big_output_r", ["--sizes", "5,20,50", "--langs", "r"], ["--sizes", "5", "--langs", "r"], 900),
    ("introspection", [], ["--quick"], 900),
    ("web", [], ["--quick"], 600),
    ("isolation", ["--n", "5", "--repeat", "2"], ["--quick"], 1800),
]

HOW_TO_RUN = """\
## How to run

```sh
.venv/bin/python bench/run_all.py            # everything (~10 min), rewrites this file
.venv/bin/python bench/run_all.py --quick    # smaller N, for checking the scripts
.venv/bin/python bench/first_result.py --n 5 # any benchmark alone prints its table
.venv/bin/python bench/exec_overhead.py --n 200
.venv/bin/python bench/memory.py --reps 3
.venv/bin/python bench/big_output.py --sizes 5,20,50 --langs python,r [--flushy 2,5]
.venv/bin/python bench/introspection.py [--record]  # env pane, data viewer, help (~4–6 min)
.venv/bin/python bench/web.py [--record]            # the web IDE in headless Chromium (~1 min)
.venv/bin/python bench/isolation.py [--record]      # before/after session isolation (~4 min)
```

Each script starts its own hub (`rsparkhub serve` on a free 127.0.0.1 port, temp data
dir, default settings: SQLite, bubblewrap sandbox when `bwrap` is installed, event-log
fsync on) through `bench/_hub.py`, which reuses `tests/conftest.py`'s `HubProcess` and kills
the session processes of that data dir at exit. Every loop is bounded in count and time.
Needs R with IRkernel (`ir` kernelspec) and the venv's `python3` kernelspec.
Numbers are from a shared 2-core machine: other people's test suites may run at the same
time (the load average is recorded below); compare ratios more than absolute values.
"""


def run_bench(name: str, args: list[str], timeout: int, out_dir: Path) -> dict[str, Any] | None:
    script = "big_output" if name.startswith("big_output") else name
    out = out_dir / f"{name}.json"
    cmd = [sys.executable, str(HERE / f"{script}.py"), *args, "--json", str(out)]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    t = time.monotonic()
    try:
        proc = subprocess.run(cmd, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        print(f"   {name} timed out after {timeout} s", flush=True)
        return {"error": f"timed out after {timeout} s"}
    print(proc.stdout, flush=True)
    if proc.returncode != 0 or not out.exists():
        print(proc.stderr[-3000:], flush=True)
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    data = json.loads(out.read_text())
    data["wall_s"] = time.monotonic() - t
    return data


def verdicts(res: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    eo = res.get("exec_overhead")
    if eo and "data" in eo:
        import statistics

        for c in eo["data"]["cases"]:
            ratio = statistics.median(c["hub"]) / statistics.median(c["direct"])
            ok = "meets" if ratio <= 1.3 else "**misses**"
            lines.append(
                f"- exec overhead, {c['language']} `{c['code']}`: hub/direct median = {ratio:.2f}× "
                f"— {ok} the goal ≤ 1.3×"
            )
    runs = []
    for key in ("big_output", "big_output_r"):
        bo = res.get(key)
        if bo and "data" in bo:
            runs += bo["data"]["runs"]
    for lang in ("python", "r"):
        rs = sorted((r for r in runs if r["language"] == lang), key=lambda r: r["mb"])
        if len(rs) < 2:
            continue
        grow = [(r["mb"], (r["hub_peak"] - r["hub_before"]) / 2**20) for r in rs]
        small, big = grow[0], grow[-1]
        exact = all(r["exact"] for r in rs)
        factor = big[1] / small[1] if small[1] > 0 else float("inf")
        lines.append(
            f"- big output, {lang}: hub peak growth {small[1]:.1f} MiB at {small[0]} MB → "
            f"{big[1]:.1f} MiB at {big[0]} MB ({big[0] / small[0]:.0f}× the output, "
            f"{factor:.2f}× the growth); bytes exact in every run: {'yes' if exact else '**NO**'}"
        )
    bo = res.get("big_output")
    for r in (bo or {}).get("data", {}).get("flushy_runs", []):
        d = r.get("direct") or {}
        lost = 1 - r["bytes_received"] / r["bytes_expected"]
        lines.append(
            f"- big output printed line by line with a flush per line, {r['mb']} MB: the client got "
            f"{'all bytes' if r['exact'] else f'**{100 * lost:.0f}% less** than printed'}, done: "
            f"{r['status']}"
            + (f" (direct jupyter_client got {d['bytes'] / r['bytes_expected']:.0%})" if d else "")
        )
    lines += (res.get("introspection") or {}).get("goals", [])
    lines += (res.get("web") or {}).get("goals", [])
    lines += (res.get("isolation") or {}).get("goals", [])
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    only = {x for x in args.only.split(",") if x}
    facts = machine_facts()
    load_before = os.getloadavg()
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-json-") as tmp:
        for name, full, quick, timeout in BENCHES:
            if only and name not in only and not (name == "big_output_r" and "big_output" in only):
                continue
            res[name] = run_bench(name, quick if args.quick else full, timeout, Path(tmp))
    load_after = os.getloadavg()

    old = RESULTS.read_text() if RESULTS.exists() else ""
    notes = ""
    if NOTES_BEGIN in old and NOTES_END in old:
        notes = old[old.index(NOTES_BEGIN) : old.index(NOTES_END) + len(NOTES_END)]
    else:
        notes = f"{NOTES_BEGIN}\n(no notes yet)\n{NOTES_END}"

    parts = ["# rsparkhub benchmark results\n", HOW_TO_RUN]
    parts.append("## Machine\n")
    fact_rows = [[k, v] for k, v in facts.items()]
    fact_rows.append(
        [
            "load average (1/5/15 min) before → after",
            f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} → {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}",
        ]
    )
    fact_rows.append(["mode", "quick" if args.quick else "full"])
    parts.append(table(["fact", "value"], fact_rows) + "\n")
    v = verdicts(res)
    if v:
        parts.append("## Goals\n\n" + "\n".join(v) + "\n")
    parts.append("## Notes (hand-written; kept by run_all.py)\n\n" + notes + "\n")
    titles = {
        "first_result": "1. Time to first result (`bench/first_result.py`)",
        "exec_overhead": "2. Per-execution overhead (`bench/exec_overhead.py`)",
        "memory": "3. Memory (`bench/memory.py`)",
        "big_output": "4. Big output, Python (`bench/big_output.py`)",
        "big_output_r": "4b. Big output, R (`bench/big_output.py --langs r`)",
        "introspection": "5. Session introspection (`bench/introspection.py`)",
        "web": "6. Web IDE in a browser (`bench/web.py`)",
        "isolation": "9. Isolation cost (`bench/isolation.py`)",
    }
    for name, data in res.items():
        body = data.get("report") if data else None
        if not body:
            body = f"(failed: {data.get('error') if data else 'no data'})"
        wall = f" — ran in {data['wall_s']:.0f} s" if data and "wall_s" in data else ""
        parts.append(f"## {titles.get(name, name)}{wall}\n\n{body}\n")
    RESULTS.write_text("\n".join(parts))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
