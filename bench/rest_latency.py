"""REST tail latency (issue 14): ``GET /api/me`` with an API token, 8 concurrent
connections, measured with ``wrk`` (apt package ``wrk``; C, one thread, so the load
generator takes little of the two cores) against the working tree's hub and, in the same
run, the hub of a baseline commit (``--before``, default ``HEAD``).

The baseline is checked out as a temporary git worktree and run with a throwaway venv that
imports ``rsparkhub`` from it (``isolation.before_env``): every dependency is the same, only
the hub's code differs. Both hubs run at once (SQLite, default settings); their rounds are
interleaved (before, after, after, before, …) so the machine's drift hits both alike. Each
round is one ``wrk -t1 -c8 -d{secs}s --latency`` after a 2 s warm-up at the same load.

Usage: .venv/bin/python bench/rest_latency.py [--rounds 4] [--secs 8] [--before HEAD]
           [--json OUT]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _hub import publish, running_hub, table  # noqa: E402
from isolation import before_env  # noqa: E402

CONNECTIONS = 8
GOAL_P99_MS = 25.0
GOAL_RPS = 500.0
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if m is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, token: str, secs: float) -> dict[str, float]:
    """One wrk run: requests/s, latency percentiles (ms), non-2xx count."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{secs:g}s",
            "--latency",
            "--timeout",
            "10s",
            "-H",
            f"Authorization: Bearer {token}",
            f"{url}/api/me",
        ],
        capture_output=True,
        text=True,
        timeout=secs + 60,
        check=True,
    ).stdout
    res: dict[str, float] = {}
    for q in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{q}(?:\.000)?%\s+(\S+)", out, re.M)
        if m is None:
            raise RuntimeError(f"wrk printed no {q}% latency:\n{out}")
        res[f"p{q}"] = _ms(m.group(1))
    m = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    res["max"] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["errors"] = float(m.group(1)) if m else 0.0
    return res


def main_run(rounds: int, secs: float, before: str) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    loads: list[str] = []
    with (
        before_env(before) as env,
        running_hub(python=env.python) as hb,
        running_hub() as ha,
    ):
        hubs = {"before": (hb, hb.make_user("bench")), "after": (ha, ha.make_user("bench"))}
        for hub, token in hubs.values():
            wrk(hub.url, token, 2)  # warm-up
        for i in range(rounds):
            order = ("before", "after") if i % 2 == 0 else ("after", "before")
            for name in order:
                hub, token = hubs[name]
                r = wrk(hub.url, token, secs)
                r["load1"] = os.getloadavg()[0]
                results[name].append(r)
                loads.append(f"{r['load1']:.2f}")
        commit = env.commit
    return {"before": before, "commit": commit, "secs": secs, "runs": results, "loads": loads}


def report(data: dict[str, Any]) -> str:
    rows = []
    med: dict[str, dict[str, float]] = {}
    for name in ("before", "after"):
        runs = data["runs"][name]
        m = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p90", "p99", "max")}
        med[name] = m

        def spread(k: str, runs: list[dict[str, float]] = runs) -> str:
            return f"{min(r[k] for r in runs):.1f}–{max(r[k] for r in runs):.1f}"

        rows.append(
            [
                f"{name} ({data['commit']})" if name == "before" else "after (working tree)",
                f"{m['rps']:.0f} ({spread('rps')})",
                f"{m['p50']:.2f} ({spread('p50')})",
                f"{m['p90']:.2f} ({spread('p90')})",
                f"{m['p99']:.2f} ({spread('p99')})",
                f"{m['max']:.1f} ({spread('max')})",
                f"{sum(r['errors'] for r in runs):.0f}",
            ]
        )
    a, b = med["after"], med["before"]
    ok = a["p99"] < GOAL_P99_MS and a["rps"] >= GOAL_RPS
    return (
        f"`GET /api/me` (API token), {CONNECTIONS} connections, wrk -t1, "
        f"{len(data['runs']['after'])} rounds of {data['secs']:g} s per hub, interleaved; "
        "median of the rounds (min–max); latency in ms\n\n"
        + table(["hub", "req/s", "p50", "p90", "p99", "max", "non-2xx"], rows)
        + f"\n\nafter/before: req/s {a['rps'] / b['rps']:.2f}×, p99 {a['p99'] / b['p99']:.2f}×; "
        f"goal p99 < {GOAL_P99_MS:g} ms at ≥ {GOAL_RPS:g} req/s: {'met' if ok else '**missed**'}"
        f"\n\nload average (1 min) after each round: {', '.join(data['loads'])}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--secs", type=float, default=8)
    ap.add_argument("--before", default="HEAD")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data = main_run(args.rounds, args.secs, args.before)
    publish(data, report(data), args.json)


if __name__ == "__main__":
    main()
