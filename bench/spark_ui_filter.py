"""What Spark's UI filter (``JWSFilter``, hub/spark.py ``ui_filter_conf``) costs a user's
Spark server at start, side by side: the server program the hub runs (``python -m
rsparkhub.agent.spark server``, the hub's own settings from ``server_confs``), started
directly — no hub, sandbox or pasta — with the hub's current class-data archive, with the
filter (a fresh key each time) and without, alternating which goes first, ``--rounds``
times each. Reported: the start until Spark Connect's port is open, median (min–max), and
the ratio.

It needs the archive a hub made in ``--archive-dir`` (default: the tests' shared one;
``pytest tests/test_spark.py`` makes it).

Usage: .venv/bin/python bench/spark_ui_filter.py [--rounds 6] [--archive-dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _hub import fmt_ms, machine_facts, stats, table  # noqa: E402
from spark_first_statement import START_TIMEOUT_S, start, stop  # noqa: E402

from rsparkhub.hub.spark_embedded_archive import _copies_dir, _listed_copies  # noqa: E402
from rsparkhub.hub.spark_embedded_process import Archive  # noqa: E402


def archive_in(directory: Path) -> Archive:
    for path in sorted(directory.glob("spark-*.jsa")):
        copies = _listed_copies(_copies_dir(path))
        if copies is not None:
            return Archive(path, copies)
    raise SystemExit(f"no class-data archive in {directory}: run tests/test_spark.py first")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument(
        "--archive-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "rsparkhub-test-spark-classes",
    )
    args = ap.parse_args()
    archive = archive_in(args.archive_dir)
    work = Path(tempfile.mkdtemp(prefix="rsparkhub-bench-ui-filter-"))
    opened: dict[str, list[float]] = {"with the filter": [], "without": []}
    for r in range(args.rounds):
        kinds = list(opened) if r % 2 == 0 else list(reversed(opened))
        for kind in kinds:
            key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
            proc, _port, seconds = start(
                work / "data", archive, archive.class_path, None,
                ui_key=key if kind == "with the filter" else "",
            )  # fmt: skip
            stop(proc)
            opened[kind].append(seconds)
    base = stats(opened["without"])["median"]
    rows = [
        [kind, f"{fmt_ms(stats(xs)['median'])} ({fmt_ms(min(xs))}–{fmt_ms(max(xs))}, "
         f"n={len(xs)})", f"{stats(xs)['median'] / base:.2f}×"]
        for kind, xs in opened.items()
    ]  # fmt: skip
    facts = machine_facts()
    print(f"{facts.get('cpu')}, {facts.get('cores')}, git {facts.get('git')}; "
          f"start timeout {START_TIMEOUT_S:.0f} s\n")  # fmt: skip
    print(table(["server", "start → port open", "vs without"], rows))


if __name__ == "__main__":
    main()
