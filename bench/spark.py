"""Spark and PostgreSQL from sessions (issues #5, #20), through a real hub with embedded
Spark — a Spark Connect server per user, in that user's sandbox — and the embedded
PostgreSQL server.

1. **New session → first Spark result** (attach to a fresh workspace, then
   ``SparkSession.builder.getOrCreate()`` + ``spark.sql("SELECT 1").collect()`` in Python,
   until the value arrives at the client), each case run ``--cold`` times (default 2):
   - *warm*: the user's server is already running;
   - *cold, first use*: the user's server is not running (stopped when idle: the user had
     used Spark before); the first Spark call of the session starts it (the hub listens on
     the user's port while it is down), and pyspark's client retries until it opens;
   - *cold, Spark workspace*: the same, in a workspace whose file mentions Spark, so the
     server starts with the session, before any Spark call;
   - *cold, new user*: the user's very first server (it also creates their metastore and
     database before it opens);
   - *cold, no class-data archive*: a first use on a hub whose archive is not made yet (a
     once-per-install situation), for comparison.
   The hub's log lines "the Spark Connect server of … is up after … s" are reported next
   to them, and new session → first Python ``1`` on the same hub, so the difference is
   what Spark adds.
   **The first Spark statement a moment after opening** (warm server): a session is
   attached, its first Python ``1`` answered, then after ``PAUSE_S`` (a user reading their
   code) the same first statement is timed on its own — in a workspace whose file mentions
   Spark (its Python kernel imports pyspark in the background, ``RSPARKHUB_SPARK_PRELOAD``)
   and in one whose file does not (no preload), alternating. And the same statement
   ``PAUSE_S`` after opening with nothing run before: a Spark workspace (its Python kernel
   started with the session, ``session_prestart_kernel``, and pyspark imported) against
   one of notes only (the kernel starts with the statement).
   **Memory per user's server**: RSS of all its processes (pasta, bubblewrap, the server's
   Python, the JVM) and of the JVM alone, right after a cold start and after the round-trip
   loops below.
2. **Round trip of ``SELECT 1``** timed inside the session's kernels (no hub in the loop):
   through Spark Connect from Python (``spark.sql(…).collect()``), from R through the R
   interface (``rspark_collect(rspark_sql(…))``, r/spark.R) and from R with reticulate and
   plain lists (``[tuple(r) for r in spark.sql(…).collect()]``), versus an in-process
   classic ``SparkSession`` (``local[1]``, a subprocess of the benchmark) — as ratios —
   and versus a plain Spark Connect server pyspark starts on the host
   (``remote("local[1]")``: no sandbox, pasta or token), which tells Spark Connect's own
   cost from what the user's sandbox adds.
3. **PostgreSQL ``SELECT 1``** round trip from the session (Python psycopg, R DBI +
   RPostgreSQL, each connected with no arguments through the PG* variables) versus psycopg
   directly from the benchmark process to the same server, database and role (the
   benchmark learns the password by having an admin rotate it; it is never printed).

N warm-ups are dropped before each timed loop. Every loop is bounded in count and time.

The class-data archive lives in a directory of the benchmark's own, kept across runs
(made once, before the measurements, if missing).

Usage: .venv/bin/python bench/spark.py [--n 200] [--warm 3] [--cold 2] [--quick]
       [--json OUT] [--record]   (--record writes its section of bench/RESULTS.md)
       .venv/bin/python bench/spark.py --report OUT.json [--record]   (tables of an earlier run)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _hub import (  # noqa: E402
    Deadline,
    HubClient,
    HubProcess,
    P,
    fmt_ms,
    machine_facts,
    new_workspace,
    record_section,
    running_hub,
    stats,
    table,
)

from conftest import spark_server_pids  # noqa: E402

TITLE = "7. Spark and PostgreSQL (`bench/spark.py`)"
RUN_TIMEOUT = 300.0
WARMUP = 10
IDLE_S = 3  # the hubs' spark_idle_timeout_s: cold cases stop a user's server this fast
ARCHIVES = Path(tempfile.gettempdir()) / "rsparkhub-bench-spark-classes"
SPARK_ENV = {
    "RSPARKHUB_SPARK": "embedded",
    "RSPARKHUB_SPARK_DRIVER_MEMORY": "1g",
    "RSPARKHUB_SPARK_MASTER": "local[2]",
    "RSPARKHUB_SPARK_IDLE_TIMEOUT_S": str(IDLE_S),
    "RSPARKHUB_SPARK_CLASS_ARCHIVE_DIR": str(ARCHIVES),
}
USES_SPARK = {"etl.py": b"from pyspark.sql import SparkSession\n"}
# The previous recorded run (one shared server, no sandbox; git 7f3b18d), for the notes.
BEFORE = {
    "warm": "1.25 s",
    "cold": "12.7 s to the first result, the server up after 9.1 s, on a fresh hub",
    "roundtrip": "36 ms",
}

PY_FIRST = (
    "from pyspark.sql import SparkSession\n"
    "spark = SparkSession.builder.getOrCreate()\n"
    "spark.sql('SELECT 1 AS x').collect()[0].x\n"
)

PY_SETUP = """
import json as _bj, time as _bt
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
import psycopg
_bpg = psycopg.connect(autocommit=True)  # PGHOST … PGPASSWORD of the session
_bcur = _bpg.cursor()
def _b_spark():
    spark.sql("SELECT 1 AS x").collect()
def _b_pg():
    _bcur.execute("SELECT 1"); _bcur.fetchone()
def _btime(f, k):
    ts = []
    for _ in range(k):
        t0 = _bt.perf_counter(); f(); ts.append(_bt.perf_counter() - t0)
    print(_bj.dumps(ts))
for _ in range({warm}):
    _b_spark(); _b_pg()
"""

R_SETUP = """
.btime <- function(f, k) {{
  ts <- numeric(k)
  for (i in seq_len(k)) {{
    t0 <- Sys.time(); f(); ts[i] <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  }}
  cat(sprintf("%.9f", ts), "\\n")
}}
reticulate::py_run_string(paste(
  "from pyspark.sql import SparkSession as BenchSession",
  "bench_spark = BenchSession.builder.getOrCreate()",
  "def bench_q():",
  "    return [tuple(r) for r in bench_spark.sql('SELECT 1 AS x').collect()]",
  sep = "\\n"))
.b_reticulate <- reticulate::py$bench_q
stopifnot(identical(.b_reticulate()[[1]][[1]], 1L))
.bcon <- DBI::dbConnect(RPostgreSQL::PostgreSQL())  # PGHOST … PGPASSWORD of the session
.b_pg <- function() invisible(DBI::dbGetQuery(.bcon, "SELECT 1"))
for (i in seq_len({warm})) {{ invisible(.b_reticulate()); .b_pg() }}
"""

R_RSPARK_SETUP = """
if (!exists("rspark_sql")) stop("the R Spark interface (rspark_*) is not loaded")
.b_rspark <- function() invisible(rspark_collect(rspark_sql("SELECT 1 AS x")))
for (i in seq_len({warm})) .b_rspark()
"""

# (name, language, code of one round of k)
PATHS = [
    ("spark_python", "python", "_btime(_b_spark, {k})"),
    ("spark_r_rspark", "r", ".btime(.b_rspark, {k})"),
    ("spark_r_reticulate", "r", ".btime(.b_reticulate, {k})"),
    ("pg_python", "python", "_btime(_b_pg, {k})"),
    ("pg_r", "r", ".btime(.b_pg, {k})"),
]
ROUNDS = 4

# {builder}: .master("local[1]") for a classic session in this process's JVM, or
# .remote("local[1]") for a plain Spark Connect server pyspark starts on this host's
# loopback (no sandbox, no pasta, no token) and a Connect client talking to it
LOCAL_SESSION = """
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
os.environ.pop("SPARK_REMOTE", None)
from pyspark.sql import SparkSession
t0 = time.perf_counter()
spark = (SparkSession.builder.{builder}.appName("bench-local")
         .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
         .config("spark.driver.bindAddress", "127.0.0.1").getOrCreate())
print("STARTED " + json.dumps(time.perf_counter() - t0), flush=True)
for line in sys.stdin:  # one round per line: the number of queries
    ts = []
    for _ in range(int(line)):
        t = time.perf_counter(); spark.sql("SELECT 1 AS x").collect()
        ts.append(time.perf_counter() - t)
    print("RESULT " + json.dumps(ts), flush=True)
spark.stop()
"""


class LocalSession:
    """A SparkSession (local[1]) in a subprocess, driven by rounds: in-process classic, or
    (``connect``) a Connect client of a plain local Connect server."""

    def __init__(self, connect: bool = False) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
        env["SPARK_LOCAL_IP"] = "127.0.0.1"
        builder = 'remote("local[1]")' if connect else 'master("local[1]")'
        code = textwrap.dedent(LOCAL_SESSION).replace("{builder}", builder)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.start_s = float(self._line("STARTED "))

    def _line(self, prefix: str) -> str:
        assert self.proc.stdout is not None
        for _ in range(10000):  # bounded: pyspark may print a few lines of its own
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the local SparkSession process ended")
            if line.startswith(prefix):
                return line[len(prefix) :]
        raise RuntimeError("no answer from the local SparkSession process")

    def round(self, k: int) -> list[float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{k}\n")
        self.proc.stdin.flush()
        return [float(x) for x in json.loads(self._line("RESULT "))]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _floats(text: str) -> list[float]:
    text = text.strip()
    if text.startswith("["):
        return [float(x) for x in json.loads(text.splitlines()[-1])]
    return [float(x) for x in text.split()]


async def _run(att: Any, code: str, language: str, timeout: float = RUN_TIMEOUT) -> str:
    res = await att.run(code, language=language, timeout=timeout)
    if not res.ok:
        errs = [(e.ename, e.evalue[:300]) for e in res.errors]
        raise RuntimeError(f"{language}: {code[:60]!r} failed: {errs} {res.stderr[-300:]}")
    return str(res.stdout)


async def first_result(
    client: HubClient, code: str, language: str, files: dict[str, bytes] | None = None
) -> float:
    """A fresh workspace (with ``files``): attach (starts the session) → the execution's
    done event."""
    wid = await new_workspace(client, "spark-first")
    if files:
        await client.upload(wid, files)
    t0 = time.perf_counter()
    async with client.attach(wid) as att:
        rid = uuid.uuid4().hex
        await att.send(P.ExecuteRequest(id=rid, code=code, language=language))
        async for msg in att.messages(timeout=RUN_TIMEOUT):
            if msg.get("type") != "event":
                continue
            ev = P.parse_event(msg["event"])
            if isinstance(ev, P.DoneEvent) and ev.request_id == rid:
                if ev.status != "ok":
                    raise RuntimeError(f"first {language} result failed: {ev}")
                took = time.perf_counter() - t0
                break
        else:
            raise RuntimeError("no done event")
    await client.stop_session(wid)
    return took


PAUSE_S = 3.0
SPARK_FILE = {"job.py": b"from pyspark.sql import SparkSession\n"}
PLAIN_FILE = {"job.py": b"print('hello')\n"}
NOTES_FILE = {"notes.txt": b"Look at the trips again.\n"}


async def first_statement_after_pause(
    client: HubClient, files: dict[str, bytes], answered_first: bool = True
) -> float:
    """A fresh workspace with ``files``: attach, run Python ``1`` (``answered_first``; else
    nothing: the session starts the kernel of the workspace's script ahead, and in a Spark
    workspace imports pyspark), wait ``PAUSE_S``, then the wall time of the first Spark
    statement (PY_FIRST) alone."""
    wid = await new_workspace(client, "spark-pause")
    await client.upload(wid, files)
    async with client.attach(wid) as att:
        if answered_first:
            await _run(att, "1", "python")
        await asyncio.sleep(PAUSE_S)
        t0 = time.perf_counter()
        await _run(att, PY_FIRST, "python")
        took = time.perf_counter() - t0
    await client.stop_session(wid)
    return took


async def wait_state(client: HubClient, state: str, budget: Deadline) -> None:
    while (await client.request("GET", "/api/spark"))["state"] != state:
        budget.check(f"waiting for the user's Spark server to be {state}")
        await asyncio.sleep(0.25)


async def user_id(client: HubClient) -> str:
    return str((await client.request("GET", "/api/me"))["id"])


def server_rss(hub: HubProcess, uid: str) -> dict[str, int]:
    """RSS of every process of a user's server (pasta, bubblewrap, the server's Python, its
    JVM, UDF workers) and of its JVM alone, in bytes."""
    import psutil

    total = jvm = 0
    for pid in spark_server_pids(hub, uid):
        try:
            p = psutil.Process(pid)
            rss = p.memory_info().rss
            total += rss
            if p.name() == "java":
                jvm += rss
        except psutil.Error:
            pass
    return {"total": total, "jvm": jvm}


def up_times(hub: HubProcess, user: str) -> list[float]:
    """The hub's "the Spark Connect server of USER is up after S s" lines, in order."""
    pat = rf"the Spark Connect server of {re.escape(user)} is up after ([0-9.]+) s"
    return [float(x) for x in re.findall(pat, hub.log_path.read_text())]


async def warm_part(hub: HubProcess, n: int, warm_runs: int, budget: Deadline) -> dict[str, Any]:
    # PostgreSQL runs as the `postgres` system user, which must reach DATA_DIR/postgres
    # (the benchmark's temporary directory is 0700)
    hub.data_dir.parent.chmod(0o755)
    token = hub.make_user("bench")
    admin = hub.make_user("root", admin=True)
    out: dict[str, Any] = {}
    async with HubClient(hub.url, token) as client:
        # a first session starts the server; it also holds the round-trip loops
        wid = await new_workspace(client, "spark-loops")
        async with client.attach(wid) as att:
            await _run(att, "1", "python")
            await _run(att, PY_FIRST, "python")  # starts the user's server
            await wait_state(client, "running", budget)
            out["first_python"] = [await first_result(client, "1", "python")
                                   for _ in range(warm_runs)]  # fmt: skip
            out["first_spark_warm"] = [await first_result(client, PY_FIRST, "python")
                                       for _ in range(warm_runs)]  # fmt: skip
            for _ in range(warm_runs):  # alternating, so that load drifts over both alike
                out.setdefault("pause_preloaded", []).append(
                    await first_statement_after_pause(client, SPARK_FILE)
                )
                out.setdefault("pause_plain", []).append(
                    await first_statement_after_pause(client, PLAIN_FILE)
                )
                out.setdefault("open_spark", []).append(
                    await first_statement_after_pause(client, SPARK_FILE, False)
                )
                out.setdefault("open_notes", []).append(
                    await first_statement_after_pause(client, NOTES_FILE, False)
                )
            budget.check("first results")
            await _run(att, PY_SETUP.format(warm=WARMUP), "python")
            await _run(att, R_SETUP.format(warm=WARMUP), "r")
            paths = list(PATHS)
            try:
                await _run(att, R_RSPARK_SETUP.format(warm=WARMUP), "r")
            except RuntimeError as exc:
                out["spark_r_rspark_error"] = str(exc)[:300]
                paths = [p for p in paths if p[0] != "spark_r_rspark"]
            budget.check("setup")
            # the local classic session and the direct PostgreSQL connection take part in
            # the same rounds, so that the machine's load drifts over all paths alike
            local = await asyncio.to_thread(LocalSession)
            out["local_start_s"] = local.start_s
            plain = await asyncio.to_thread(LocalSession, True)
            async with HubClient(hub.url, admin) as root:
                creds = await root.request("POST", "/api/users/bench/database/rotate")
            pg = await asyncio.to_thread(_pg_connect, creds)
            try:
                await asyncio.to_thread(local.round, WARMUP)
                await asyncio.to_thread(plain.round, WARMUP)
                await asyncio.to_thread(_pg_round, pg, WARMUP)
                k = max(1, n // ROUNDS)
                for r in range(ROUNDS):
                    order = paths[r % len(paths) :] + paths[: r % len(paths)]
                    out.setdefault("spark_local", []).extend(
                        await asyncio.to_thread(local.round, k)
                    )
                    out.setdefault("spark_plain_connect", []).extend(
                        await asyncio.to_thread(plain.round, k)
                    )
                    out.setdefault("pg_direct", []).extend(
                        await asyncio.to_thread(_pg_round, pg, k)
                    )
                    for name, language, code in order:
                        text = await _run(att, code.format(k=k), language)
                        out.setdefault(name, []).extend(_floats(text))
                    budget.check(f"round {r + 1}")
            finally:
                await asyncio.to_thread(local.close)
                await asyncio.to_thread(plain.close)
                await asyncio.to_thread(pg.close)
            out["rss_after_loops"] = server_rss(hub, await user_id(client))
        await client.stop_session(wid)
    return out


def _pg_connect(creds: dict[str, Any]) -> Any:
    import psycopg

    return psycopg.connect(
        host=creds["host"],
        port=creds["port"],
        user=creds["user"],
        dbname=creds["database"],
        password=creds["password"],
        autocommit=True,
    )


def _pg_round(conn: Any, k: int) -> list[float]:
    cur = conn.cursor()
    ts = []
    for _ in range(k):
        t0 = time.perf_counter()
        cur.execute("SELECT 1")
        cur.fetchone()
        ts.append(time.perf_counter() - t0)
    return ts


async def cold_cases(hub: HubProcess, runs: int, budget: Deadline) -> dict[str, Any]:
    """On one hub: a new user's first result, then ``runs`` × (first use after an idle stop,
    a Spark workspace after an idle stop); RSS right after each cold start."""
    token = hub.make_user("cold")
    out: dict[str, Any] = {"new_user": [], "first_use": [], "spark_workspace": [], "rss": []}
    async with HubClient(hub.url, token) as client:
        uid = await user_id(client)

        async def one(case: str, files: dict[str, bytes] | None = None) -> None:
            await wait_state(client, "down", budget)  # stopped: IDLE_S without a session
            while spark_server_pids(hub, uid):  # … and gone
                budget.check("waiting for the server to stop")
                await asyncio.sleep(0.25)
            took = await first_result(client, PY_FIRST, "python", files)
            out[case].append(took)
            out["rss"].append(server_rss(hub, uid))
            budget.check(case)

        await one("new_user")
        for _ in range(runs):
            await one("first_use")
            await one("spark_workspace", USES_SPARK)
    out["up_s"] = up_times(hub, "cold")
    return out


async def no_archive_case(hub: HubProcess) -> dict[str, Any]:
    """A first use on a hub whose class-data archive is not made yet."""
    token = hub.make_user("noarchive")
    async with HubClient(hub.url, token) as client:
        took = await first_result(client, PY_FIRST, "python")
    return {"first": took, "up_s": up_times(hub, "noarchive")}


async def ensure_archive(hub: HubProcess, budget: Deadline) -> float | None:
    """Make the benchmark's class-data archive if missing: a first server, then wait for
    the hub's training run; its duration (None when it existed)."""
    from rsparkhub.config import Settings
    from rsparkhub.hub.spark_embedded_archive import ClassArchive

    # this install's archive (its key: Java, pyspark, Python, class layout), not any older one
    archive = ARCHIVES / f"spark-{await ClassArchive(Settings(), ARCHIVES).key()}.jsa"
    if archive.is_file():
        return None
    token = hub.make_user("trainer")
    t0 = time.monotonic()
    async with HubClient(hub.url, token) as client:
        await first_result(client, PY_FIRST, "python")
    while not archive.is_file():
        budget.check("waiting for the class-data archive")
        await asyncio.sleep(1)
    return time.monotonic() - t0


def fmt_t(seconds: float) -> str:
    """ms, with µs precision below 1 ms (PostgreSQL round trips are tens of µs)."""
    return f"{seconds * 1e6:.0f} µs" if seconds < 1e-3 else fmt_ms(seconds)


def report(data: dict[str, Any]) -> str:
    w = data["warm"]

    def cell(xs: list[float] | None) -> str:
        if not xs:
            return "–"
        s = stats(xs)
        return f"{fmt_t(s['median'])} (min {fmt_t(s['min'])}, p95 {fmt_t(s['p95'])}, n={s['n']})"

    def once(xs: list[float]) -> str:
        s = stats(xs)
        return f"{fmt_ms(s['median'])} ({fmt_ms(s['min'])}–{fmt_ms(s['max'])}, n={s['n']})"

    def ratio(xs: list[float] | None, ref: list[float]) -> str:
        return f"{stats(xs)['median'] / stats(ref)['median']:.1f}×" if xs else "–"

    c = data["cold"]
    s_py = stats(w["first_python"])["median"]
    s_warm = stats(w["first_spark_warm"])["median"]
    ups = c["up_s"]
    # the hub's log: the new user's start first, then first use / Spark workspace in turn
    up_new, up_rest = ups[:1], ups[1:]
    rows1 = [
        ["new session → first Python `1` (same hub, server running)", once(w["first_python"])],
        ["new session → first Spark result, your server running (warm)",
         once(w["first_spark_warm"])],
        ["… Spark's share of it (pyspark import, connect, query)", fmt_ms(s_warm - s_py)],
        *([[f"first Spark statement {PAUSE_S:g} s after the session answered, a workspace "
            "that does not mention Spark (no preload)", once(w["pause_plain"])],
           [f"first Spark statement {PAUSE_S:g} s after the session answered, a Spark "
            "workspace (pyspark imported in the background)", once(w["pause_preloaded"])]]
          if w.get("pause_plain") else []),
        *([[f"first Spark statement {PAUSE_S:g} s after opening (nothing run before), a "
            "workspace of notes only (the kernel starts with the statement)",
            once(w["open_notes"])],
           [f"first Spark statement {PAUSE_S:g} s after opening (nothing run before), a Spark "
            "workspace (its Python kernel started with the session, pyspark imported)",
            once(w["open_spark"])]]
          if w.get("open_spark") else []),
        ["new session → first Spark result, your server stopped, first use (cold)",
         once(c["first_use"])],
        ["new session → first Spark result, your server stopped, Spark workspace (cold)",
         once(c["spark_workspace"])],
        ["… your server's start in those runs (the hub's log: 'up after')",
         once(up_rest) if up_rest else "–"],
        ["new session → first Spark result, a new user's very first server",
         once(c["new_user"])],
        ["… that server's start (it also makes the user's metastore and database)",
         once(up_new) if up_new else "–"],
        ["first use on a hub with no class-data archive yet (once per install)",
         once([data["no_archive"]["first"]])],
        ["… that server's start", once(data["no_archive"]["up_s"][:1])
         if data["no_archive"]["up_s"] else "–"],
    ]  # fmt: skip
    rss_cold = [r["total"] for r in c["rss"] if r["total"]]
    jvm_cold = [r["jvm"] for r in c["rss"] if r["jvm"]]
    loops = w["rss_after_loops"]

    def mem(xs: list[int]) -> str:
        xs = sorted(xs)
        return f"{xs[len(xs) // 2] / 2**20:.0f} MiB ({xs[0] / 2**20:.0f}–{xs[-1] / 2**20:.0f}, n={len(xs)})"

    rows_mem = [
        ["just after a cold start and its first query: all its processes", mem(rss_cold)],
        ["… of which the JVM", mem(jvm_cold)],
        [f"after the round trips below ({data['n']} queries per path): all its processes",
         mem([loops["total"]])],
        ["… of which the JVM", mem([loops["jvm"]])],
    ]  # fmt: skip
    local = w["spark_local"]
    rspark = w.get("spark_r_rspark")
    rows2 = [
        ["in-process classic SparkSession (local[1], no Connect), Python", cell(local), "1.0×"],
        *([["plain Spark Connect: pyspark's own local server (`remote('local[1]')`), no "
            "sandbox, pasta or token, Python", cell(w["spark_plain_connect"]),
            ratio(w["spark_plain_connect"], local)]] if w.get("spark_plain_connect") else []),
        ["Python kernel → Spark Connect (`spark.sql(…).collect()`)",
         cell(w["spark_python"]), ratio(w["spark_python"], local)],
        ["R kernel → R interface (`rspark_collect(rspark_sql(…))`) → Spark Connect",
         cell(rspark) if rspark else f"not measured: {w.get('spark_r_rspark_error', '')[:80]}",
         ratio(rspark, local)],
        ["R kernel → reticulate, plain lists → Spark Connect",
         cell(w["spark_r_reticulate"]), ratio(w["spark_r_reticulate"], local)],
    ]  # fmt: skip
    rows3 = [
        ["psycopg from the benchmark process (direct)", cell(w["pg_direct"]), "1.0×"],
        ["Python kernel, psycopg (PG* variables)", cell(w["pg_python"]),
         ratio(w["pg_python"], w["pg_direct"])],
        ["R kernel, DBI + RPostgreSQL (PG* variables)", cell(w["pg_r"]),
         ratio(w["pg_r"], w["pg_direct"])],
    ]  # fmt: skip
    n, rounds = data["n"], ROUNDS
    med = {k: stats(v)["median"] for k, v in w.items() if isinstance(v, list) and v}
    notes = [
        "How to read it:",
        f"* Warm, Spark adds {fmt_ms(s_warm - s_py)} to a new session's first result: "
        "importing pyspark in the kernel, the gRPC connection and the first query (goal: "
        f"≤ 1.5 s in all; {BEFORE['warm']} with the shared server before).",
    ]
    if w.get("pause_plain") and w.get("pause_preloaded"):
        pre, plain = stats(w["pause_preloaded"])["median"], stats(w["pause_plain"])["median"]
        notes.append(
            f"* A moment ({PAUSE_S:g} s) after a session answered, its first Spark statement "
            f"takes {fmt_ms(pre)} in a workspace that uses Spark against {fmt_ms(plain)} in "
            f"one that does not ({pre / plain:.2f}×): the Spark workspace's Python kernel "
            "imported pyspark's Connect client in the background meanwhile. Sent at once "
            "(the rows above), a statement waits for that import either way."
        )
    notes.append(
        "* Cold (goal: < 5 s; the one shared server of before took "
        f"{BEFORE['cold']}): the user's server starts under the user's uid in a sandbox "
        "(pasta, bubblewrap, a cgroup), its JVM mapping the class-data archive, which halves "
        "its start (compare the no-archive row) and holds Spark's code generator too (from "
        "unsigned copies of its signed jars: `bench/spark_first_statement.py`). The first "
        "query then waits for the "
        "client's next reconnection (session kernels retry a refused connection at most "
        "every 250 ms, and cap gRPC's own reconnect backoff the same way), "
        "runs in a JVM that has run nothing yet (its JIT compiles with C2 only after ten "
        "times HotSpot's call thresholds, and the catalog opens 5 s after the port, so that "
        "neither takes a core from that query), and pays the per-message latency below on "
        "each of the client's first calls. A Spark workspace starts the server with the "
        "session, so the kernel's start and pyspark's import overlap it; a new user's first "
        "server also creates their Derby metastore and database before it opens."
    )
    notes.append(
        f"* A trivial query through Spark Connect costs {fmt_t(med['spark_python'])} "
        f"against {fmt_t(med['spark_local'])} in an in-process classic session "
        f"({BEFORE['roundtrip']} before, when sessions and the shared server talked over "
        "plain loopback)"
        + (
            f", and {fmt_t(med['spark_plain_connect'])} through pyspark's own local Connect "
            "server with no sandbox, pasta or token. So of the "
            f"{fmt_t(med['spark_python'] - med['spark_local'])} difference, Spark Connect "
            f"itself accounts for {fmt_t(med['spark_plain_connect'] - med['spark_local'])} "
            "(`spark.sql` runs its statement eagerly, then `collect` runs the plan again, each "
            "an ExecutePlan the server analyses and answers with an Arrow batch), and the "
            "user's server in its sandbox (two pasta forwards between the session's and the "
            "server's network namespaces, the token check, `local[2]` instead of `local[1]`) "
            f"for {fmt_t(med['spark_python'] - med['spark_plain_connect'])}."
            if "spark_plain_connect" in med
            else "."
        )
    )
    if "spark_r_rspark" in med:
        notes.append(
            f"* The R interface adds {fmt_t(med['spark_r_rspark'] - med['spark_r_reticulate'])}"
            " over raw reticulate with plain lists: its Arrow → JSON → data.frame conversion "
            "and error handling."
        )
    notes.append(
        f"* PostgreSQL from the session's Python is as fast as from outside "
        f"({fmt_t(med['pg_python'])} vs {fmt_t(med['pg_direct'])}); from R, "
        f"`DBI::dbGetQuery` with RPostgreSQL costs {fmt_t(med['pg_r'])} per query: the "
        "wire takes what psycopg takes, the rest is R, DBI and RPostgreSQL (result fetching "
        "and the data.frame)."
    )
    return (
        "**Time to the first Spark result** (wall time at the client, median (min–max))\n\n"
        + table(["measurement", "time"], rows1)
        + "\n\n**Memory of one user's Spark server** (RSS, median (min–max); "
        "`spark_driver_memory = 1g`, `local[2]`; the JVM's pages of the class-data archive "
        "are file-backed and shared between users' servers)\n\n"
        + table(["when", "RSS"], rows_mem)
        + f"\n\n**`SELECT 1` through Spark, round trip timed inside the process that asks** "
        f"(N={n} per path in {rounds} interleaved rounds after {WARMUP} warm-ups; ratio of "
        f"medians to the in-process classic session, which started in "
        f"{w['local_start_s']:.1f} s)\n\n"
        + table(["path", "median (min, p95)", "vs in-process"], rows2)
        + "\n\n**PostgreSQL `SELECT 1` round trip** (same rounds; autocommit; the user's "
        "database and role on the embedded server, over TCP 127.0.0.1)\n\n"
        + table(["path", "median (min, p95)", "vs direct"], rows3)
        + "\n\n"
        + "\n".join(notes)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="round trips per path")
    ap.add_argument("--warm", type=int, default=3, help="warm first-result runs")
    ap.add_argument("--cold", type=int, default=2, help="cold runs (a fresh hub each)")
    ap.add_argument("--quick", action="store_true", help="n=40, warm=1, cold=1")
    ap.add_argument("--json", type=Path, help="write the raw data here")
    ap.add_argument("--record", action="store_true", help="write the section of RESULTS.md")
    ap.add_argument("--report", type=Path, help="no run: print the tables of a --json file")
    args = ap.parse_args()
    if args.report:
        earlier = json.loads(args.report.read_text())
        text = report(earlier)
        print(text)
        if args.record and "facts" in earlier:
            record_section(TITLE, "bench/spark.py", text, earlier["facts"],
                           earlier["wall_s"], tuple(earlier["load"]))  # fmt: skip
        return
    if args.quick:
        args.n, args.warm, args.cold = 40, 1, 1
    budget = Deadline(1800)
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t0 = time.monotonic()
    data: dict[str, Any] = {"n": args.n}
    ARCHIVES.mkdir(parents=True, exist_ok=True)
    no_archive = Path(tempfile.mkdtemp(prefix="rsparkhub-bench-no-classes-"))
    try:  # first, while nothing else runs: the archive is not made before the hub stops
        env = {**SPARK_ENV, "RSPARKHUB_SPARK_CLASS_ARCHIVE_DIR": str(no_archive),
               "RSPARKHUB_USER_DATABASES": "off"}  # fmt: skip
        with running_hub(env) as hub:
            data["no_archive"] = asyncio.run(no_archive_case(hub))
    finally:
        shutil.rmtree(no_archive, ignore_errors=True)
    with running_hub({**SPARK_ENV, "RSPARKHUB_USER_DATABASES": "off"}) as hub:
        data["trained_s"] = asyncio.run(ensure_archive(hub, budget))
    with running_hub({**SPARK_ENV, "RSPARKHUB_USER_DATABASES": "off"}) as hub:
        data["cold"] = asyncio.run(cold_cases(hub, args.cold, budget))
    with running_hub({**SPARK_ENV, "RSPARKHUB_USER_DATABASES": "embedded"}) as hub:
        data["warm"] = asyncio.run(warm_part(hub, args.n, args.warm, budget))
    wall = time.monotonic() - t0
    load1 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    facts = machine_facts()
    facts["pyspark"] = _pyspark_version()
    facts["java"] = _java()
    facts["mode"] = "quick" if args.quick else "full"
    if args.json:  # first: the tables can be made again from it (--report)
        args.json.write_text(
            json.dumps({**data, "facts": facts, "wall_s": wall, "load": [load0, load1]})
        )
    text = report(data)
    print(text)
    if args.record:
        record_section(TITLE, "bench/spark.py", text, facts, wall, (load0, load1))


def _pyspark_version() -> str:
    import pyspark

    return str(pyspark.__version__)


def _java() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
        return (out.stderr or out.stdout).splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "?"


if __name__ == "__main__":
    main()
