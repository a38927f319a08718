"""A user's Spark server from its start to its first answered statement, with the class-data
archive made on Spark's signed jars (before) and on the unsigned copies that
``hub/spark_embedded_archive.py`` puts first on the class path (now), side by side.

HotSpot archives no class of a signed jar; Spark's code generator (Janino) comes in two,
and the first statement of every server loads ~370 of its classes. This measures the
server program the hub runs (``python -m rsparkhub.agent.spark server``, with the hub's
own settings from ``server_confs``) directly, without the hub, the sandbox or pasta, so
that the difference is the class path and nothing else. Each round starts one server of
each kind, alternating which goes first, each with its own archive (made once, by the same
training run the hub uses, kept in a directory of the benchmark's own); a fresh
Spark Connect client process then connects and runs ``SELECT 1`` twice.

Reported per kind, median (min–max) over the rounds: the server's start until Spark
Connect's port is open, the client's first statement (connection, session, query: what a
cold first result waits for after the port opens), the second statement, and their sum;
and the ratio now / before.

Usage: .venv/bin/python bench/spark_first_statement.py [--rounds 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _hub import fmt_ms, machine_facts, publish, stats, table  # noqa: E402

from rsparkhub.config import Settings  # noqa: E402
from rsparkhub.hub.spark_embedded_archive import unsigned_copies  # noqa: E402
from rsparkhub.hub.spark_embedded_process import (  # noqa: E402
    Archive,
    UserServer,
    server_argv,
    server_confs,
    server_env,
    spark_home,
    start_config,
)
from rsparkhub.hub.supervised import free_port  # noqa: E402

KEEP = Path(tempfile.gettempdir()) / "rsparkhub-bench-first-statement"
START_TIMEOUT_S = 240.0
CLIENT = """
import sys, time, warnings
warnings.filterwarnings("ignore")
from pyspark.sql.connect.session import SparkSession
spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
t0 = time.monotonic()
spark.sql("SELECT 1 AS x").collect()
t1 = time.monotonic()
spark.sql("SELECT 2 AS x").collect()
t2 = time.monotonic()
print(t1 - t0, t2 - t1)
"""


def start(
    data: Path,
    archive: Archive | None,
    class_path: tuple[Path, ...],
    train: Path | None,
    ui_key: str = "",
) -> tuple[subprocess.Popen[bytes], int, float]:
    """The server program on ``data`` (its UI filtered with ``ui_key`` if given); returns
    (process, port, seconds until open)."""
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    srv = UserServer(user_id="bench", user="bench", port=free_port(), ui_key=ui_key)
    confs = server_confs(Settings(), srv, data, free_port(), archive, class_path=class_path)
    extra = ("--train", str(train)) if train else ()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        server_argv(data, *extra),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=server_env(spark_home(), data, srv.user),
        cwd=data,
    )
    assert proc.stdin is not None and proc.stdout is not None
    # a user's server has its metastore (the catalog opens 5 s after the port, in the
    # background): a fresh directory without one is the same until then
    config = {"nonce": "bench", **start_config(srv, confs, data, first=train is not None)}
    proc.stdin.write((json.dumps(config) + "\n").encode())
    proc.stdin.flush()
    deadline = t0 + START_TIMEOUT_S
    for line in proc.stdout:
        if time.monotonic() > deadline:
            break
        if line.startswith(b"@rsparkhub:bench "):
            event = json.loads(line.split(b" ", 1)[1]).get("event")
            if event == "open":
                return proc, srv.port, time.monotonic() - t0
            if event == "failed":
                break
    proc.kill()
    raise RuntimeError(f"the server did not open ({data})")


def stop(proc: subprocess.Popen[bytes], *, wait_for: bytes | None = None) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    if wait_for is not None:  # training: it stops itself once done
        for line in proc.stdout:
            if wait_for in line:
                break
    proc.stdin.close()
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ensure_archive(kind: str, class_path: tuple[Path, ...]) -> Archive:
    path = KEEP / f"{kind}.jsa"
    if not path.is_file():
        print(f"making the {kind} archive …", file=sys.stderr)
        proc, _port, _t = start(KEEP / f"train-{kind}", None, class_path, path)
        stop(proc, wait_for=b'"trained"')
        if not path.is_file():
            raise RuntimeError(f"training wrote no archive {path}")
    return Archive(path, class_path)


def one(kind: str, archive: Archive) -> dict[str, float]:
    proc, port, opened = start(KEEP / f"run-{kind}", archive, archive.class_path, None)
    try:
        out = subprocess.run(
            [sys.executable, "-c", CLIENT, f"sc://127.0.0.1:{port}/;user_id=bench"],
            capture_output=True, text=True, timeout=300, check=True,
        ).stdout.split()  # fmt: skip
    finally:
        stop(proc)
    first, second = float(out[0]), float(out[1])
    return {"open": opened, "first": first, "second": second, "total": opened + first}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    KEEP.mkdir(exist_ok=True)
    copies = unsigned_copies(spark_home() / "jars", KEEP / "copies.jars")
    archives = {"before": ensure_archive("signed", ()), "now": ensure_archive("unsigned", copies)}
    facts = machine_facts()
    facts["load average before"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    got: dict[str, list[dict[str, float]]] = {"before": [], "now": []}
    for r in range(args.rounds):
        order = ["before", "now"] if r % 2 == 0 else ["now", "before"]
        for kind in order:
            got[kind].append(one(kind, archives[kind]))
            print(f"round {r + 1} {kind}: {got[kind][-1]}", file=sys.stderr)
    facts["load average after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = []
    for key, label in (
        ("open", "server start → port open"),
        ("first", "first statement (connect, session, SELECT 1)"),
        ("second", "second statement"),
        ("total", "start → first answer"),
    ):
        b = stats([x[key] for x in got["before"]])
        n = stats([x[key] for x in got["now"]])
        rows.append([
            label,
            f"{fmt_ms(b['median'])} ({fmt_ms(b['min'])}–{fmt_ms(b['max'])})",
            f"{fmt_ms(n['median'])} ({fmt_ms(n['min'])}–{fmt_ms(n['max'])})",
            f"{n['median'] / b['median']:.2f}×",
        ])  # fmt: skip
    text = "\n\n".join([
        table(["fact", "value"], [[k, v] for k, v in facts.items()]),
        f"**A user's Spark server, no hub or sandbox, {args.rounds} rounds** (median (min–max); "
        "before: archive on Spark's signed jars; now: on unsigned copies first)",
        table(["measurement", "before", "now", "now / before"], rows),
    ])  # fmt: skip
    publish({"facts": facts, "runs": got}, text, args.json)


if __name__ == "__main__":
    main()
