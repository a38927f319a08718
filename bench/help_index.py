"""The session's full-text help index (src/rsparkhub/agent/helpindex.py) on this machine's
installed R packages and the venv's Python: cold build time, the per-search freshness check
(stat of every package, nothing changed), query latency (median / p95 over a set of
queries, index warm) and size on disk. Prints a table; copy it into bench/RESULTS.md.

    .venv/bin/python bench/help_index.py [--reps 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rsparkhub.agent.helpindex import HelpIndex, default_roots

QUERIES = {
    "r": ["coordinates", "linear model", "plot", "regular expression", "missing values",
          "time series", "quantile", "matrix inverse", "confidence interval", "xyzzy"],
    "python": ["circular reference", "json", "regular expression", "temporary file",
               "dataframe merge", "thread pool", "len", "decimal rounding", "socket", "xyzzy"],
}  # fmt: skip


async def bench(reps: int) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        index = HelpIndex(Path(tmp))
        for lang in ("r", "python"):
            roots = default_roots(lang)
            t = time.perf_counter()
            stats = await index.refresh(lang, roots)
            build = time.perf_counter() - t
            rows.append((lang, "cold build (s)", f"{build:.1f}"))
            rows.append((lang, "sources / pages", f"{stats.sources} / {stats.pages}"))
            rows.append((lang, "size on disk (MB)", f"{index.size(lang) / 1e6:.1f}"))
            checks = []
            for _ in range(10):
                t = time.perf_counter()
                await index.refresh(lang, roots)
                checks.append(time.perf_counter() - t)
            rows.append(
                (lang, "freshness check, median (ms)", f"{statistics.median(checks) * 1e3:.1f}")
            )
            lat = []
            for _ in range(reps):
                for q in QUERIES[lang]:
                    t = time.perf_counter()
                    await index.search(lang, q, 100, roots)  # includes the freshness check
                    lat.append(time.perf_counter() - t)
            lat.sort()
            rows.append(
                (lang, "search incl. check, median (ms)", f"{statistics.median(lat) * 1e3:.1f}")
            )
            rows.append(
                (lang, "search incl. check, p95 (ms)", f"{lat[int(len(lat) * 0.95)] * 1e3:.1f}")
            )
        index.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    rows = asyncio.run(bench(args.reps))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}, Python {sys.version.split()[0]}")  # fmt: skip
    print("| language | figure | value |")
    print("|---|---|---|")
    for lang, what, value in rows:
        print(f"| {lang} | {what} | {value} |")


if __name__ == "__main__":
    main()
