"""Spark from R (the rspark_* functions of agent/r/spark.R) on the user's own embedded Spark
Connect server: real R sessions with reticulate driving the session's pyspark, one user
(one server) for the module. Also the bundled Spark example workspace, run end to end from R
and from Python."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

from conftest import HubProcess, embedded_spark_hub, spark_server_pids

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SPARK_R = ROOT / "src/rsparkhub/agent/r/spark.R"
EXAMPLE = ROOT / "src/rsparkhub/examples/spark"
# the first call waits (bounded) for the server the first session started
CONNECT = "invisible(rspark_connect(timeout = 170))"


@pytest.fixture(scope="module")
def spark_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    with embedded_spark_hub(tmp_path_factory.mktemp("spark-r") / "data") as hub:
        yield hub


@pytest.fixture(scope="module")
def token(spark_hub: HubProcess) -> str:
    return spark_hub.make_user("alice")


def _user_id(hub: HubProcess, token: str) -> str:
    return str(hub.client(token).get("/api/me").json()["id"])


def _errors(r: Any) -> list[tuple[str, str]]:
    return [(e.ename, e.evalue) for e in r.errors]


async def _r(s: Any, code: str, timeout: float = 240) -> str:
    r = await asyncio.wait_for(s.run(code, language="r"), timeout)
    assert r.ok, (code, r.stdout, r.stderr, _errors(r))
    return str(r.stdout)


async def _r_error(s: Any, code: str, timeout: float = 240) -> str:
    """Runs R code that must fail; the error text the user sees."""
    r = await asyncio.wait_for(s.run(code, language="r"), timeout)
    assert not r.ok and r.done is not None and r.done.status == "error", (code, r.stdout)
    return " ".join(f"{e.ename}: {e.evalue}" for e in r.errors)


async def _py(s: Any, code: str, timeout: float = 240) -> str:
    r = await asyncio.wait_for(s.run(code, language="python"), timeout)
    assert r.ok, (code, r.stdout, _errors(r))
    return str(r.stdout)


# ------------------------------------------------------------------------------ no hub


def _rscript(code: str) -> subprocess.CompletedProcess[str]:
    """R with spark.R attached as the agent does, without SPARK_REMOTE."""
    prelude = (
        'e <- attach(NULL, name = "tools:rspark"); '
        f'sys.source("{SPARK_R}", envir = e, keep.source = FALSE)\n'
    )
    full_env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}
    full_env["RETICULATE_PYTHON"] = sys.executable
    return subprocess.run(
        ["Rscript", "-e", prelude + code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def test_without_spark_remote_the_error_says_why() -> None:
    out = _rscript(
        'r <- tryCatch(rspark_sql("SELECT 1"), error = function(e) e)\n'
        'cat(class(r)[1], isNamespaceLoaded("reticulate"), "\\n")\n'
        "cat(conditionMessage(r))\n"
    )
    assert out.returncode == 0, out.stderr
    first, message = out.stdout.split("\n", 1)
    # failed before loading anything
    assert first.split() == ["rspark_error", "FALSE"]
    assert "SPARK_REMOTE is not set" in message and "spark = 'embedded'" in message


def test_the_example_data_are_what_make_data_writes(tmp_path: Path) -> None:
    script = EXAMPLE / "make_data.py"
    spec = importlib.util.spec_from_file_location("make_data", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for name in ("trips.csv", "weather.csv"):
        assert (tmp_path / name).read_bytes() == (EXAMPLE / name).read_bytes(), name
    assert 2_000_000 < (EXAMPLE / "trips.csv").stat().st_size < 5_000_000


# ------------------------------------------------------------------------------ sessions


async def test_r_session_starts_without_python_and_connects_on_first_use(
    spark_hub: HubProcess, token: str
) -> None:
    async with HubClient(spark_hub.url, token) as c:
        w = await c.ensure_workspace("lazy")
        async with c.attach(w["id"]) as s:
            probe = (
                'maps <- readLines("/proc/self/maps")\n'
                'cat(isNamespaceLoaded("reticulate"), any(grepl("libpython", maps)), '
                'exists("rspark_sql"), "tools:rspark" %in% search(), '
                'nzchar(Sys.getenv("RETICULATE_PYTHON")), "\\n")\n'
            )
            assert (await _r(s, probe)).split() == ["FALSE", "FALSE", "TRUE", "TRUE", "TRUE"]
            # nothing in the search path is masked by the interface
            masked = await _r(
                s,
                'n <- ls("tools:rspark"); '
                "cat(sum(vapply(n, function(x) length(find(x)) > 1L, NA)), all(startsWith("
                'n[!grepl("\\\\.rspark_", n)], "rspark_")), "\\n")',
            )
            assert masked.split() == ["0", "TRUE"]
            await _r(s, CONNECT)
            out = await _r(
                s,
                "info <- rspark_connect()\n"
                'cat(isNamespaceLoaded("reticulate"), info$user, info$database, '
                "info$version, '\\n')\n",
            )
            loaded, user, db, version = out.split()
            assert (loaded, user, db) == ("TRUE", "alice", "u_alice")
            assert version.startswith("4.")


async def test_sql_and_collect_with_r_types(spark_hub: HubProcess, token: str) -> None:
    async with HubClient(spark_hub.url, token) as c:
        w = await c.ensure_workspace("types")
        async with c.attach(w["id"]) as s:
            await _r(s, CONNECT)
            out = await _r(
                s,
                """
x <- rspark_sql("SELECT * FROM VALUES
  (1, 2.5D, 'a', true, DATE'2024-02-29', TIMESTAMP'2024-03-01 12:30:15', 10000000000L),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (3, CAST('NaN' AS DOUBLE), 'NA', false, DATE'1969-12-31', TIMESTAMP'1970-01-01 00:00:00', -1L)
  AS t(i, d, s, b, dt, ts, big)")
df <- rspark_collect(x)
cat(vapply(df, function(v) class(v)[1], ""), "\\n")
cat(nrow(df), is.na(df$i[2]), is.na(df$d[2]), is.na(df$s[2]), is.na(df$b[2]), is.na(df$dt[2]),
    is.na(df$ts[2]), is.nan(df$d[3]), identical(df$s[3], "NA"), "\\n")
cat(format(df$dt), format(df$big[1], scientific = FALSE), df$i[3], "\\n")
tz <- rspark_collect(rspark_sql("SELECT current_timezone() AS tz"))$tz
cat(identical(as.numeric(df$ts[1]), as.numeric(as.POSIXct("2024-03-01 12:30:15", tz = tz))),
    identical(as.numeric(df$ts[3]), as.numeric(as.POSIXct("1970-01-01", tz = tz))), "\\n")
""",
            )
            lines = out.splitlines()
            assert lines[0].split() == [
                "integer", "numeric", "character", "logical", "Date", "POSIXct", "numeric"
            ]  # fmt: skip
            assert lines[1].split() == ["3"] + ["TRUE"] * 8
            assert lines[2].split() == ["2024-02-29", "NA", "1969-12-31", "10000000000", "3"]
            assert lines[3].split() == ["TRUE", "TRUE"]  # in the Spark session's time zone

            # a big result is bounded by default, with a warning; n = Inf takes everything
            out = await _r(
                s,
                "options(rspark.collect_max = 1000)\n"
                'big <- rspark_sql("SELECT id FROM range(5000)")\n'
                "w <- NULL\n"
                "a <- withCallingHandlers(rspark_collect(big), warning = function(x) {\n"
                "  w <<- conditionMessage(x); invokeRestart('muffleWarning') })\n"
                "b <- rspark_collect(big, n = Inf)\n"
                'cat(nrow(a), nrow(b), nrow(head(big, 3)), rspark_count(big), "\\n"); cat(w)\n',
            )
            first, warning = out.split("\n", 1)
            assert first.split() == ["1000", "5000", "3", "5000"]
            assert "first 1000 rows" in warning and "n = Inf" in warning

            # printing a handle previews it (columns and the first rows)
            out = await _r(s, 'print(rspark_sql("SELECT id, id * 2 AS twice FROM range(20)"))')
            assert "Spark DataFrame [id: bigint, twice: bigint]" in out
            assert re.search(r"10\s+9\s+18", out) and "more rows" in out


async def test_read_csv_and_parquet(spark_hub: HubProcess, token: str) -> None:
    csv = b"day,city,amount,paid\n2024-01-05,Oslo,12.5,true\n2024-01-06,Bergen,,false\n"
    async with HubClient(spark_hub.url, token) as c:
        w = await c.ensure_workspace("files")
        await c.upload(w["id"], {"data/sales.csv": csv})
        async with c.attach(w["id"]) as s:
            await _r(s, CONNECT)
            out = await _r(
                s,
                """
sales <- rspark_read_csv("data/sales.csv", view = "sales")
print(rspark_schema(sales))
df <- rspark_collect(rspark_sql("SELECT * FROM sales ORDER BY day"))
cat(vapply(df, function(v) class(v)[1], ""), "\\n")
cat(format(df$day), df$amount, df$paid, "\\n")
typed <- rspark_read_csv("data/sales.csv", schema = "day STRING, city STRING, amount DOUBLE, paid BOOLEAN")
cat(class(rspark_collect(typed)$day), "\\n")
rspark_write_parquet(sales, "out/sales.parquet", mode = "overwrite")
back <- rspark_collect(rspark_read_parquet("out/sales.parquet"))
back <- back[order(back$day), ]
cat(identical(unname(as.list(back)), unname(as.list(df))), "\\n")
""",
            )
            lines = out.strip().splitlines()
            assert lines[-4].split() == ["Date", "character", "numeric", "logical"]
            assert lines[-3].split() == ["2024-01-05", "2024-01-06", "12.5", "NA", "TRUE", "FALSE"]
            assert lines[-2].strip() == "character"
            assert lines[-1].strip() == "TRUE"
            # a Parquet file written by another program (pyarrow in the Python kernel)
            await _py(
                s,
                "import pyarrow as pa, pyarrow.parquet as pq, datetime as dt\n"
                "pq.write_table(pa.table({'k': pa.array([1, None, 3], pa.int32()),\n"
                "  'when': [dt.date(2020, 1, 1), None, dt.date(2021, 6, 30)],\n"
                "  'label': ['x', 'y', None]}), 'ext.parquet')\n",
            )
            out = await _r(
                s,
                'p <- rspark_collect(rspark_read_parquet("ext.parquet"))\n'
                'cat(vapply(p, function(v) class(v)[1], ""), "\\n")\n'
                'cat(p$k, format(p$when), p$label, "\\n")\n',
            )
            assert out.splitlines()[0].split() == ["integer", "Date", "character"]
            assert out.splitlines()[1].split() == [
                "1", "NA", "3", "2020-01-01", "NA", "2021-06-30", "x", "y", "NA"
            ]  # fmt: skip
            # a path the server cannot find: the R error says so, and which path
            err = await _r_error(s, 'rspark_read_csv("missing.csv")')
            assert "PATH_NOT_FOUND" in err and "missing.csv" in err


async def test_r_data_frame_as_a_view_shared_with_python(spark_hub: HubProcess, token: str) -> None:
    async with HubClient(spark_hub.url, token) as c:
        w = await c.ensure_workspace("upload")
        async with c.attach(w["id"]) as s:
            await _r(s, CONNECT)
            out = await _r(
                s,
                """
local_df <- data.frame(
  id = 1:4, x = c(0.1, NA, 1/3, -2e10), who = factor(c("a", "b", NA, "a")),
  ok = c(TRUE, NA, FALSE, TRUE), day = as.Date(c("2024-01-01", NA, "1999-12-31", "2024-02-29")),
  at = as.POSIXct(c("2024-01-01 10:00:00", "2024-06-01 23:59:59", NA, "1970-01-01 00:00:00"),
                  tz = "UTC"))
h <- rspark_copy_to(local_df, "local_df")
agg <- rspark_collect(rspark_sql(
  "SELECT who, count(*) AS n, sum(x) AS sx FROM local_df GROUP BY who ORDER BY who"))
print(agg)
back <- rspark_collect(rspark_sql("SELECT * FROM local_df ORDER BY id"))
cat(identical(back$x, local_df$x), identical(back$day, local_df$day),
    identical(as.numeric(back$at), as.numeric(local_df$at)),
    identical(back$who, as.character(local_df$who)), identical(back$ok, local_df$ok), "\\n")
""",
            )
            assert out.strip().splitlines()[-1].split() == ["TRUE"] * 5
            assert re.search(r"\sa\s+2\s+-2\.0+e\+10", out)  # 0.1 - 2e10
            # the session's Python kernel shares the server-side Spark session: same view
            out = await _py(
                s,
                "from pyspark.sql import SparkSession\n"
                "spark = SparkSession.builder.getOrCreate()\n"
                "print(spark.table('local_df').count(), spark.catalog.currentDatabase())\n"
                "spark.range(3).createOrReplaceTempView('from_python')\n",
            )
            assert out.split() == ["4", "u_alice"]
            out = await _r(s, 'cat(rspark_count(rspark_table("from_python")), "\\n")')
            assert out.strip() == "3"
            out = await _r(s, "t <- rspark_tables(); print(t[t$temporary, ])")
            assert "local_df" in out and "from_python" in out


async def test_save_table_survives_a_session_restart(spark_hub: HubProcess, token: str) -> None:
    async with HubClient(spark_hub.url, token) as c:
        w = await c.ensure_workspace("persist")
        async with c.attach(w["id"]) as s:
            await _r(s, CONNECT)
            await _r(
                s,
                "kept <- rspark_copy_to(data.frame(k = 1:3, v = c('x', 'y', NA)), name = NULL)\n"
                'rspark_save_table(kept, "r_kept", mode = "overwrite")\n'
                'rspark_copy_to(data.frame(k = 9L), "just_a_view")\n',
            )
            # SQL commands run at once: DDL through rspark_sql
            out = await _r(
                s,
                'rspark_sql("CREATE TABLE r_ddl (a INT) USING parquet")\n'
                'a <- "r_ddl" %in% rspark_tables()$name\n'
                'rspark_sql("DROP TABLE r_ddl")\n'
                'cat(a, "r_ddl" %in% rspark_tables()$name, "\\n")\n',
            )
            assert out.split() == ["TRUE", "FALSE"]
            err = await _r_error(s, 'rspark_save_table(kept, "r_kept")')  # mode "error"
            assert "TABLE_OR_VIEW_ALREADY_EXISTS" in err or "already exists" in err
        await c.stop_session(w["id"])
        async with c.attach(w["id"]) as s:
            await _r(s, CONNECT)
            out = await _r(
                s,
                'df <- rspark_collect(rspark_table("r_kept"))\n'
                "df <- df[order(df$k), ]\n"
                'cat(df$k, df$v, "\\n")\n'
                "t <- rspark_tables()\n"
                'cat(t$database[t$name == "r_kept"], "just_a_view" %in% t$name, "\\n")\n',
            )
            assert out.splitlines() == ["1 2 3 x y NA ", "u_alice FALSE "]
    data = spark_hub.data_dir / "spark" / "users" / _user_id(spark_hub, token) / "data"
    assert (data / "warehouse" / "u_alice" / "r_kept").is_dir()


async def test_glm_and_the_python_escape_hatches(spark_hub: HubProcess, token: str) -> None:
    async with HubClient(spark_hub.url, token) as c:
        w = await c.ensure_workspace("glm")
        async with c.attach(w["id"]) as s:
            await _r(s, CONNECT)
            out = await _r(
                s,
                """
d <- rspark_sql("SELECT id, cast(id % 10 AS double) AS x, CASE WHEN id % 3 = 0 THEN 'a' ELSE 'b' END AS g,
                 cast(2 + 0.5 * (id % 10) + CASE WHEN id % 3 = 0 THEN 1.5 ELSE 0 END AS double) AS y,
                 cast((id * 7919) % 100 < 10 * (id % 10) AS int) AS hit FROM range(2000)")
fit <- rspark_glm(d, y ~ x + g)
cat(names(coef(fit)), "\\n"); cat(round(coef(fit), 3), "\\n")
logit <- rspark_glm(d, hit ~ x, family = "binomial")
cat(logit$family, logit$link, coef(logit)[["x"]] > 0, "\\n")
new <- rspark_copy_to(data.frame(x = c(0, 9), g = c("a", "b")), "new_points")
p <- rspark_collect(predict(fit, new))
cat(names(p), round(p$prediction, 3), "\\n")
print(fit)
# the pyspark objects behind the interface, for what it does not cover
dedup <- rspark_wrap(rspark_py(rspark_sql("SELECT id % 2 AS k FROM range(10)"))$dropDuplicates())
cat(rspark_count(dedup), reticulate::py_to_r(rspark_session()$version) != "", "\\n")
""",
            )
            lines = out.splitlines()
            names = lines[0].split()
            assert (
                names[:2] == ["(Intercept)", "x"] and len(names) == 3 and names[2].startswith("g_")
            )
            intercept, slope, dummy = map(float, lines[1].split())
            assert slope == 0.5 and {intercept, round(intercept + dummy, 3)} == {2.0, 3.5}
            assert lines[2].split() == ["binomial", "logit", "TRUE"]
            assert lines[3].split() == ["x", "g", "prediction", "3.5", "6.5"]
            assert "Spark GLM (gaussian, link identity): y ~ x + g" in out and "Pr(>|t|)" in out
            assert lines[-1].split() == ["2", "TRUE"]


async def test_spark_errors_are_r_errors(spark_hub: HubProcess, token: str) -> None:
    async with HubClient(spark_hub.url, token) as c:
        w = await c.ensure_workspace("errors")
        async with c.attach(w["id"]) as s:
            await _r(s, CONNECT)
            err = await _r_error(s, 'rspark_sql("SELECT * FROM no_such_table")')
            assert "Spark error [TABLE_OR_VIEW_NOT_FOUND]" in err and "no_such_table" in err
            assert "Traceback" not in err and "JVM stacktrace" not in err and len(err) < 1000
            err = await _r_error(s, 'rspark_sql("SELEC 1")')
            assert "PARSE_SYNTAX_ERROR" in err
            err = await _r_error(s, 'rspark_sql("SELECT nope FROM range(1)")')
            assert "UNRESOLVED_COLUMN" in err and "nope" in err
            out = await _r(
                s,
                'e <- tryCatch(rspark_sql("SELECT * FROM no_such_table"), error = identity)\n'
                'cat(class(e)[1], e$spark_condition, e$sqlstate, "\\n")\n',
            )
            assert out.split() == ["rspark_error", "TABLE_OR_VIEW_NOT_FOUND", "42P01"]
            err = await _r_error(s, "rspark_copy_to(data.frame(z = I(list(1, 2))), 'bad')")
            assert "Column 'z'" in err
            err = await _r_error(s, "rspark_copy_to(head(mtcars))")  # the default view name
            assert "plain name" in err and "head(mtcars)" in err
            # the session is fine afterwards
            assert (await _r(s, 'cat(rspark_count(rspark_sql("SELECT 1")))')).strip() == "1"


async def test_disconnect_keeps_the_shared_session_unless_released(
    spark_hub: HubProcess, token: str
) -> None:
    async with HubClient(spark_hub.url, token) as c:
        w = await c.ensure_workspace("disconnect")
        async with c.attach(w["id"]) as s:
            await _r(s, CONNECT)
            await _r(s, 'old <- rspark_sql("SELECT 1 AS one"); rspark_view(old, "v_keep")')
            await _r(s, "rspark_disconnect()")
            out = await _r(
                s, 'cat(rspark_count(rspark_table("v_keep")), rspark_connect()$database, "\\n")'
            )
            assert out.split() == ["1", "u_alice"]
            err = await _r_error(s, "rspark_collect(old)")
            assert "earlier connection" in err
            # release = TRUE ends the server-side session for good (Spark Connect refuses a
            # closed session id): the error says so; a restarted hub session has a new one
            await _r(s, "rspark_disconnect(release = TRUE)")
            err = await _r_error(s, 'rspark_table("v_keep")')
            assert "SESSION_CLOSED" in err and "restart the session" in err
        await c.stop_session(w["id"])
        async with c.attach(w["id"]) as s:
            out = await _r(s, 'cat(rspark_connect()$database, "\\n")')
            assert out.strip() == "u_alice"
            err = await _r_error(s, 'rspark_table("v_keep")')
            assert "TABLE_OR_VIEW_NOT_FOUND" in err


async def test_interrupt_cancels_spark_from_r_and_r_stays_interruptible(
    spark_hub: HubProcess, token: str
) -> None:
    async with HubClient(spark_hub.url, token) as c:
        w = await c.ensure_workspace("interrupt")
        async with c.attach(w["id"]) as s:
            await _r(s, CONNECT)
            query = "SELECT sum(id % 3) FROM range(0, 10000000000000, 1, 4)"
            long_spark = f'rspark_collect(rspark_sql("{query}"))'
            for rid, code, wait in (
                ("long-spark", long_spark, 4.0),
                ("early", long_spark, 0.3),  # lands anywhere: in R or inside the Python call
                ("long-r", "while (TRUE) {}", 4.0),  # reticulate must not eat R's interrupts
            ):
                await s.send(P.ExecuteRequest(id=rid, code=code, language="r"))
                await asyncio.sleep(wait)
                await s.send(P.InterruptRequest(id=f"int-{rid}", language="r"))
                status = None
                async for msg in s.messages(timeout=60):
                    ev = msg.get("event", {})
                    if ev.get("type") == "done" and ev.get("request_id") == rid:
                        status = ev["status"]
                        break
                assert status in ("aborted", "error"), (rid, status)
            out = await _r(s, 'cat(rspark_count(rspark_sql("SELECT * FROM range(7)")), "\\n")')
            assert out.strip() == "7"


# ------------------------------------------------------------------------------ the example


def _coef(text: str, name: str) -> float:
    m = re.search(rf"^\s*{name}\s+(-?\d+\.\d+)", text, re.M)
    assert m, (name, text)
    return float(m.group(1))


async def test_the_spark_example_runs_from_r_and_python(spark_hub: HubProcess, token: str) -> None:
    async with HubClient(spark_hub.url, token) as c:
        project = await c.ensure_project("default")
        ws = await c.request(
            "POST",
            f"/api/projects/{project['id']}/workspaces",
            json={"name": f"spark-example-{uuid.uuid4().hex[:6]}", "example": "spark"},
        )
        files = [f["path"] for f in await c.request("GET", f"/api/workspaces/{ws['id']}/files")]
        assert {"analysis.R", "analysis.py", "trips.csv", "weather.csv", "make_data.py"} <= set(
            files
        )
        async with c.attach(ws["id"]) as s:
            await _r(s, CONNECT)
            r = await asyncio.wait_for(s.run(path="analysis.R", mode="source"), 400)
            assert r.ok, (r.stdout[-3000:], _errors(r))
            text = r.stdout + "".join(str(x.data.get("text/plain", "")) for x in r.results)
            assert "44907" in text
            # the Poisson GLM finds the generating coefficients again
            assert abs(_coef(text, "temperature_c") - 0.045) < 0.005
            assert abs(_coef(text, "rainy") + 0.5) < 0.05
            assert abs(_coef(text, "weekend") + 0.15) < 0.05
            assert len(r.plots) == 2 and all(p.mime == "image/png" for p in r.plots)
            assert "bike_daily" in text

            p = await asyncio.wait_for(s.run(path="analysis.py", mode="run"), 400)
            assert p.ok, (p.stdout[-3000:], _errors(p))
            assert "trips: 44907" in p.stdout and "current database: u_alice" in p.stdout
            for name in ("temperature_c", "rainy", "weekend"):  # the same model, the same fit
                assert abs(_coef(p.stdout, name) - _coef(text, name)) < 1e-3, name
            assert len(p.plots) == 2
            assert "'bike_daily', 'bike_daily_py'" in p.stdout
        # the plots are stored by the hub
        png = await c.plot_bytes(r.plots[0].url or "")
        assert png.startswith(b"\x89PNG")


# ------------------------------------------------------------------------------ last: kills


async def test_killed_server_gives_an_r_error_then_reconnects(
    spark_hub: HubProcess, token: str
) -> None:
    async with HubClient(spark_hub.url, token) as c:
        w = await c.ensure_workspace("killed")
        async with c.attach(w["id"]) as s:
            await _r(s, CONNECT)
            await _r(
                s, 'rspark_save_table(rspark_sql("SELECT 5 AS five"), "r_survivor", "overwrite")'
            )
            await _r(s, 'h <- rspark_sql("SELECT 1 AS one")')
            old = spark_server_pids(spark_hub, _user_id(spark_hub, token))
            assert old
            for pid in old:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            err = await _r_error(s, "rspark_collect(h)")
            assert "Spark error [" in err and "the next rspark_ call connects again" in err, err
            # the hub restarts the server; the next call reconnects (waiting for it) and works
            out = await _r(
                s, f'{CONNECT}; cat(rspark_collect(rspark_table("r_survivor"))$five, "\\n")'
            )
            assert out.strip() == "5"
            new = spark_server_pids(spark_hub, _user_id(spark_hub, token))
            assert new and not set(new) & set(old)
            err = await _r_error(s, "rspark_collect(h)")  # a handle of the old connection
            assert "earlier connection" in err
