# Spark from R: the rspark_* functions (docs/spark.md has the reference).
#
# The agent attaches this file in every R session, next to the introspection code:
#
#     local({ e <- attach(NULL, name = "tools:rspark")
#             sys.source("/abs/path/spark.R", envir = e, keep.source = FALSE) })
#
# Sourcing it only defines functions: reticulate, Python and pyspark are loaded by the first
# rspark_* call, so an R session that does not use Spark pays nothing. (In a clean render
# process, `source(Sys.getenv("RSPARKHUB_RSPARK_R"))` defines the same functions.)
#
# How it works. The functions drive the pyspark Spark Connect client inside the R process
# through reticulate, with the session's own Python (RETICULATE_PYTHON, set by the agent).
# It connects with SPARK_REMOTE, which names this hub session's server-side Spark session:
# temporary views and the current database are shared with the session's Python kernel.
# Data cross between R and Python as JSON text, column by column (Python -> R: pyarrow
# columns from DataFrame.toArrow(); R -> Python: exact "%.17g" numbers), never as pandas or
# numpy objects (Debian's reticulate 1.28 cannot convert pandas 3 / numpy 2). Every Python
# call goes through `call()` below, which returns errors as data: an R error then carries
# Spark's message (first line) and error class, not a Python traceback. R interrupts are
# held back during a call into Python (see `py_run`).
#
# Layout. Public names all start with `rspark_` (sparklyr exports spark_* and sdf_*, SparkR
# exports sql(), collect(), head() methods …: none of them is masked, both can be loaded
# next to this). The implementation lives in one environment whose parent is the base
# namespace, and other packages are called as pkg::fun, so user variables cannot break it.

(function(target) {

impl <- local({

`%||%` <- function(a, b) if (is.null(a)) b else a

DEFAULT_COLLECT_MAX <- 100000
PREVIEW_ROWS <- 10L
CONNECT_RETRIES <- 3L     # client retries per connection attempt (about 0.5 s)
QUERY_RETRIES <- 10L      # client retries of a query while the server is unreachable (~1 min)

state <- new.env(parent = emptyenv())
state$py <- NULL          # the helper module (Python), loaded by the first call
state$spark <- NULL       # the pyspark SparkSession
state$remote <- NULL
state$gen <- 0L           # connection generation: handles remember theirs

# ----------------------------------------------------------------------------------------
# The Python half: executed once into a private module of the embedded interpreter.

PY_CODE <- r"---(
import json
import os
import re
import traceback
import warnings

warnings.filterwarnings("ignore", message=r".*(pandas|[Pp]y[Aa]rrow|RETRIES_EXCEEDED).*")

LOST = ("StatusCode.UNAVAILABLE", "SESSION_CHANGED", "NO_ACTIVE_SESSION",
        "failed to connect to all addresses", "Connection refused", "closed channel",
        "Socket closed")


def describe_error(exc):
    cond = None
    getter = getattr(exc, "getCondition", None) or getattr(exc, "getErrorClass", None)
    if callable(getter):
        try:
            cond = getter()
        except Exception:
            cond = None
    sqlstate = None
    f = getattr(exc, "getSqlState", None)
    if callable(f):
        try:
            sqlstate = f()
        except Exception:
            sqlstate = None
    text = str(exc) or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else type(exc).__name__
    grpc = re.search(r"status = StatusCode\.(\w+)", text)
    if grpc:
        details = re.search(r'details = "([^"]*)"', text)
        cond = cond or "GRPC_" + grpc.group(1)
        first = details.group(1) if details else grpc.group(1)
    m = re.match(r"^\[([A-Za-z0-9_.]+)\]\s*(.*)$", first)
    if m:
        cond = cond or m.group(1)
        first = m.group(2)
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if isinstance(exc, KeyboardInterrupt) or (
        isinstance(exc, RuntimeError) and any("rpytools" in f.filename for f in frames)
    ):  # an R interrupt reached Python (directly, or in a callback into R)
        cond, first = "INTERRUPTED", "the Spark call was interrupted"
    elif cond is None and frames:  # not from Spark: say where
        frame = frames[-1]
        where = frame.filename.split("site-packages/")[-1]
        first = f"{first} ({where}, line {frame.lineno})"
    return {
        "condition": cond,
        "type": type(exc).__name__,
        "message": first[:2000],
        "sqlstate": sqlstate,
        "lost": any(s in text for s in LOST) and "SESSION_CLOSED" not in text,
    }


def noop():
    return None


def call(fn, *args):
    try:
        return (True, fn(*args))
    except BaseException as exc:  # noqa: BLE001 - becomes an R error
        return (False, json.dumps(describe_error(exc)))


def retries(spark, n, max_backoff=10000):
    from pyspark.sql.connect.client.retries import DefaultPolicy

    spark.client.set_retry_policies([DefaultPolicy(max_retries=n, max_backoff=max_backoff)])


def quiet_loggers():
    # pyspark logs every failed query's server stack trace on stderr: R gets the message
    import logging

    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


def connect(remote, n_retries):
    import pyspark.sql.connect.client.core as core
    from pyspark.sql.connect.session import SparkSession

    from rsparkhub.agent.pykernel_plots import SPARK_RETRY_MAX_MS, spark_channel_options

    spark_channel_options(core)  # a server that comes up is used at once (see there)
    quiet_loggers()
    # what pyspark.sql.SparkSession.builder.remote() sets too: pyspark.ml checks it
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    spark = SparkSession.builder.remote(remote).create()
    try:
        retries(spark, n_retries, SPARK_RETRY_MAX_MS)
        spark.catalog.currentDatabase()
    except BaseException:
        spark.client.close()
        raise
    # create() keeps an earlier (closed) session as the default/active one; pyspark.ml
    # looks the session up there
    with SparkSession._lock:
        SparkSession._default_session = spark
    SparkSession._active_session.session = spark
    return spark


def info(spark):
    return json.dumps({"version": spark.version, "database": spark.catalog.currentDatabase()})


def disconnect(spark, release):
    if release:
        spark.stop()
    else:
        spark.client.close()


def schema_json(df):
    return json.dumps([[f.name, f.dataType.simpleString()] for f in df.schema.fields])


def sql(spark, query):
    return spark.sql(query)


def table(spark, name):
    return spark.table(name)


def read(spark, fmt, path, options, schema):
    r = spark.read.format(fmt)
    if schema:
        r = r.schema(schema)
    for k, v in dict(options or {}).items():
        r = r.option(k, v)
    return r.load(path)


def view(df, name):
    df.createOrReplaceTempView(name)


def save_table(df, name, mode):
    df.write.mode(mode).saveAsTable(name)


def write(df, fmt, path, mode):
    df.write.mode(mode).format(fmt).save(path)


def count(df):
    return int(df.count())


def tables(spark, database):
    out = []
    for t in spark.catalog.listTables(database):
        ns = getattr(t, "namespace", None) or []
        out.append({"name": t.name, "database": ns[-1] if ns else None,
                    "type": t.tableType, "temporary": bool(t.isTemporary)})
    return json.dumps(out)


def _column(col, field):
    import pyarrow as pa

    t = field.type
    tz = None
    if pa.types.is_boolean(t):
        kind = "logical"
    elif pa.types.is_integer(t):
        kind = "integer" if t.bit_width <= 32 and pa.types.is_signed_integer(t) else "double"
    elif pa.types.is_floating(t) or pa.types.is_decimal(t):
        kind = "double"
        col = col.cast(pa.float64())
    elif pa.types.is_date(t):
        kind = "Date"
        col = col.cast(pa.date32()).cast(pa.int32())
    elif pa.types.is_timestamp(t):
        kind = "POSIXct"
        tz = t.tz or "UTC"
        col = col.cast(pa.timestamp("us", tz=t.tz)).cast(pa.int64())
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        kind = "character"
    elif pa.types.is_null(t):
        kind = "logical"
    else:
        kind = "character"
        vals = col.to_pylist()
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            vals = [None if v is None else v.hex() for v in vals]
        else:
            vals = [None if v is None else json.dumps(v, default=str) for v in vals]
        return kind, tz, json.dumps(vals)
    text = json.dumps(col.to_pylist())
    if kind == "double":
        text = (text.replace("-Infinity", '"-Inf"').replace("Infinity", '"Inf"')
                .replace("NaN", '"NaN"'))
    return kind, tz, text


def collect(df, n):
    if n is not None:
        df = df.limit(int(n) + 1)
    tbl = df.toArrow()
    more = n is not None and tbl.num_rows > n
    if more:
        tbl = tbl.slice(0, int(n))
    names, kinds, tzs, values = [], [], [], []
    for field, col in zip(tbl.schema, tbl.columns, strict=True):
        kind, tz, text = _column(col, field)
        names.append(field.name)
        kinds.append(kind)
        tzs.append(tz or "")
        values.append(text)
    return json.dumps({"rows": tbl.num_rows, "more": more, "names": names,
                       "kinds": kinds, "tz": tzs}), values


SPECIAL = {"NA": None, "NaN": float("nan"), "Inf": float("inf"), "-Inf": float("-inf")}


def from_columns(spark, names, kinds, values):
    import pyarrow as pa

    arrays = []
    for kind, text in zip(kinds, values, strict=True):
        vals = json.loads(text)
        if kind == "double":
            arr = pa.array([SPECIAL[v] if isinstance(v, str) else v for v in vals], pa.float64())
        elif kind == "integer":
            arr = pa.array(vals, pa.int32())
        elif kind == "logical":
            arr = pa.array(vals, pa.bool_())
        elif kind == "Date":
            arr = pa.array(vals, pa.int32()).cast(pa.date32())
        elif kind == "POSIXct":
            micros = [None if v is None else round(v * 1e6) for v in vals]
            arr = pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        else:
            arr = pa.array(vals, pa.string())
        arrays.append(arr)
    return spark.createDataFrame(pa.Table.from_arrays(arrays, names=list(names)))


CANONICAL = {"gaussian": "identity", "binomial": "logit", "poisson": "log", "gamma": "inverse"}


def glm_fit(df, formula, family, link, max_iter, reg_param):
    from pyspark.ml.feature import RFormula
    from pyspark.ml.regression import GeneralizedLinearRegression

    rf = RFormula(formula=formula, featuresCol="rspark_features", labelCol="rspark_label",
                  handleInvalid="skip").fit(df)
    train = rf.transform(df)
    kw = {"family": family, "featuresCol": "rspark_features", "labelCol": "rspark_label",
          "maxIter": int(max_iter), "regParam": float(reg_param)}
    if link:
        kw["link"] = link
    model = GeneralizedLinearRegression(**kw).fit(train)
    attrs = train.schema["rspark_features"].metadata.get("ml_attr", {}).get("attrs", {})
    named = sorted((a["idx"], a.get("name", f"x{a['idx']}"))
                   for group in attrs.values() for a in group)
    names = [name for _, name in named]
    coefs = [float(v) for v in model.coefficients]
    if len(names) != len(coefs):
        names = [f"x{i}" for i in range(len(coefs))]
    s = model.summary
    out = {"names": ["(Intercept)"] + names, "estimate": [float(model.intercept)] + coefs,
           "family": family, "link": link or CANONICAL.get(family),
           "n": int(s.numInstances), "rank": int(s.rank), "aic": None,
           "deviance": float(s.deviance), "null_deviance": float(s.nullDeviance),
           "df_residual": int(s.residualDegreeOfFreedom), "dispersion": float(s.dispersion),
           "iterations": int(s.numIterations)}
    try:
        out["aic"] = float(s.aic)
    except Exception:
        pass
    try:  # not available with regularization; Spark puts the intercept last
        se, tv, pv = (list(map(float, x)) for x in
                      (s.coefficientStandardErrors, s.tValues, s.pValues))
        out.update(std_error=se[-1:] + se[:-1], statistic=tv[-1:] + tv[:-1],
                   p_value=pv[-1:] + pv[:-1])
    except Exception:
        pass
    return rf, model, json.dumps(out)


def glm_predict(rf, model, df):
    return model.transform(rf.transform(df)).drop("rspark_features", "rspark_label")
)---"

# ----------------------------------------------------------------------------------------
# errors

spark_condition <- function(info, call = NULL) {
    cond <- info$condition %||% info$type %||% "Error"
    msg <- info$message %||% ""
    if (!is.null(info$sqlstate) && !grepl("SQLSTATE", msg, fixed = TRUE))
        msg <- paste0(msg, " (SQLSTATE ", info$sqlstate, ")")
    hint <- ""
    if (isTRUE(info$lost))
        hint <- paste0("\nThe Spark server was restarted or cannot be reached; the next rspark_",
                       " call connects again (data frame handles made before must be made again).")
    else if (startsWith(cond, "INVALID_HANDLE.SESSION_CLOSED"))
        hint <- paste0("\nThis session's Spark session was ended (rspark_disconnect(release = ",
                       "TRUE), or spark.stop() in Python) and cannot be used again: restart the ",
                       "session for a new one.")
    else if (identical(cond, "PATH_NOT_FOUND"))
        hint <- paste0("\nPaths are read by the Spark server: a relative path is made absolute ",
                       "against R's working directory, and must be visible to the server.")
    structure(class = c("rspark_error", "error", "condition"),
              list(message = paste0("Spark error [", cond, "]: ", msg, hint), call = call,
                   spark_condition = cond, sqlstate = info$sqlstate))
}

fail <- function(...) stop(structure(class = c("rspark_error", "error", "condition"),
                                     list(message = paste0(...), call = NULL)))

# ----------------------------------------------------------------------------------------
# Python

python <- function() {
    if (!is.null(state$py)) return(state$py)
    if (!requireNamespace("reticulate", quietly = TRUE))
        fail("The R package 'reticulate' is not installed; the rspark_* functions need it ",
             "(Debian: apt-get install r-cran-reticulate).")
    py_exe <- Sys.getenv("RETICULATE_PYTHON")
    if (nzchar(py_exe) && !reticulate::py_available(initialize = FALSE))
        reticulate::use_python(py_exe, required = TRUE)
    ok <- tryCatch({
        reticulate::py_available(initialize = TRUE) &&
            reticulate::py_module_available("pyspark") &&
            reticulate::py_module_available("pyarrow")
    }, error = function(e) fail("Python could not be started through reticulate: ",
                                conditionMessage(e)))
    if (!ok) {
        exe <- tryCatch(reticulate::py_config()$python, error = function(e) "?")
        fail("The Python that reticulate uses (", exe, ") has no pyspark/pyarrow: the ",
             "rspark_* functions need the session's Python (RETICULATE_PYTHON, set by the ",
             "hub), with pip install 'pyspark[connect]'.")
    }
    mod <- reticulate::import("types", convert = FALSE)$ModuleType("rsparkhub_rspark")
    builtins <- reticulate::import_builtins(convert = FALSE)
    builtins$exec(PY_CODE, reticulate::py_get_attr(mod, "__dict__"))
    state$py <- mod
    mod
}

# Calls helper `name` with arguments; returns the Python result (unconverted) or raises an
# R error carrying Spark's message.
pycall <- function(name, ...) {
    args <- list(...)  # first: connecting (an argument) may fail before Python is needed
    py <- python()
    res <- py_run(py, function() do.call(py$call, c(list(reticulate::py_get_attr(py, name)),
                                                    args)))
    ok <- reticulate::py_to_r(reticulate::py_get_item(res, 0L))
    val <- reticulate::py_get_item(res, 1L)
    if (isTRUE(ok)) return(val)
    info <- jsonlite::fromJSON(reticulate::py_to_r(val), simplifyVector = TRUE)
    if (isTRUE(info$lost)) forget_connection()
    stop(spark_condition(info))
}

# Runs f(), a call into Python, with R interrupts held back until it returns. reticulate
# would otherwise pass an interrupt on to Python as a KeyboardInterrupt at any point inside
# pyspark, which can leave its client stuck. An interrupt of the session cancels the
# session's Spark operations on the server (the agent's interruptAll), so the call returns
# promptly, and R handles the interrupt right after. A KeyboardInterrupt still pending in
# Python from earlier (reticulate polls) goes off in a no-op first.
py_run <- function(py, f) {
    suspendInterrupts({
        tryCatch(py$noop(), error = function(e) NULL, interrupt = function(e) NULL)
        f()
    })
}

py_chr <- function(x) {
    force(x)  # before reticulate:: loads the namespace
    reticulate::py_to_r(x)
}

# ----------------------------------------------------------------------------------------
# connection

forget_connection <- function() {
    sp <- state$spark
    state$spark <- NULL
    state$gen <- state$gen + 1L
    if (!is.null(sp) && !is.null(state$py))
        try(state$py$call(reticulate::py_get_attr(state$py, "disconnect"), sp, FALSE),
            silent = TRUE)
}

connect <- function(remote = Sys.getenv("SPARK_REMOTE"), timeout = 120, quiet = FALSE) {
    if (!is.character(remote) || length(remote) != 1L || is.na(remote) || !nzchar(remote))
        fail("Spark is not available in this session: SPARK_REMOTE is not set. The hub turns ",
             "Spark on with spark = 'embedded' (a Spark Connect server on this machine) or ",
             "spark = 'external' with spark_remote_url, in its configuration (docs/spark.md); ",
             "or connect to a server yourself: rspark_connect(remote = \"sc://HOST:15002\").")
    if (!grepl("^sc://", remote))
        fail("SPARK_REMOTE must be a Spark Connect URL (sc://HOST:PORT/;…), not '", remote, "'.")
    if (!is.null(state$spark) && identical(state$remote, remote))
        return(invisible(connection_info()))
    if (!is.null(state$spark)) forget_connection()
    python()
    deadline <- Sys.time() + timeout
    waited <- FALSE
    repeat {
        py <- state$py
        res <- py_run(py, function() py$call(reticulate::py_get_attr(py, "connect"), remote,
                                             CONNECT_RETRIES))
        if (isTRUE(reticulate::py_to_r(reticulate::py_get_item(res, 0L)))) break
        info <- jsonlite::fromJSON(py_chr(reticulate::py_get_item(res, 1L)))
        if (!isTRUE(info$lost) || Sys.time() > deadline) {
            if (isTRUE(info$lost))
                info$message <- paste0("no Spark Connect server answered at ",
                                       sub(";.*$", "", remote), " within ", timeout, " s (",
                                       info$message, ")")
            info$lost <- FALSE
            stop(spark_condition(info))
        }
        if (!waited && !quiet) message("Waiting for the Spark server to start …")
        waited <- TRUE
        Sys.sleep(0.25)
    }
    state$spark <- reticulate::py_get_item(res, 1L)
    state$remote <- remote
    state$gen <- state$gen + 1L
    ok <- FALSE
    on.exit(if (!ok) forget_connection())
    pycall("retries", state$spark, QUERY_RETRIES)
    info <- connection_info()
    ok <- TRUE
    if (!quiet)
        message(sprintf("Connected to Spark %s at %s as %s; current database: %s", info$version,
                        info$server, info$user %||% "?", info$database))
    invisible(info)
}

connection_info <- function() {
    remote <- state$remote
    user <- regmatches(remote, regexec(";user_id=([^;]*)", remote))[[1L]][2L]
    st <- jsonlite::fromJSON(py_chr(pycall("info", state$spark)))
    list(server = sub("/?;.*$", "", remote),
         user = if (is.na(user)) NULL else utils::URLdecode(user),
         version = st$version, database = st$database)
}

spark <- function() {
    if (is.null(state$spark)) connect(quiet = FALSE)
    state$spark
}

disconnect <- function(release = FALSE) {
    sp <- state$spark
    if (is.null(sp)) return(invisible(FALSE))
    state$spark <- NULL
    state$gen <- state$gen + 1L
    pycall("disconnect", sp, isTRUE(release))
    invisible(TRUE)
}

# ----------------------------------------------------------------------------------------
# handles

new_df <- function(pydf, source) {
    schema <- jsonlite::fromJSON(py_chr(pycall("schema_json", pydf)), simplifyVector = TRUE)
    types <- if (length(schema)) stats::setNames(schema[, 2L], schema[, 1L]) else character()
    ref <- new.env(parent = emptyenv())
    ref$df <- pydf
    structure(list(ref = ref, gen = state$gen, source = source, schema = types,
                   label = sprintf("Spark DataFrame [%s]%s", paste(names(types), types,
                                   sep = ": ", collapse = ", "),
                                   if (nzchar(source)) paste0(" from ", source) else "")),
              class = "rspark_df")
}

py_df <- function(x) {
    if (!inherits(x, "rspark_df"))
        fail("Expected a Spark DataFrame handle (from rspark_sql(), rspark_table(), ",
             "rspark_read_csv() …), got an object of class ", class(x)[1L], ".")
    if (!identical(x$gen, state$gen) || is.null(state$spark) || is.null(x$ref$df))
        fail("This Spark DataFrame handle belongs to an earlier connection (rspark_connect() ",
             "again, a Spark server restart, or a saved R workspace): create it again.")
    x$ref$df
}

short <- function(s, n = 60L) {
    s <- gsub("\\s+", " ", trimws(s))
    if (nchar(s) > n) paste0(substr(s, 1L, n - 1L), "\u2026") else s
}

abs_path <- function(path) {
    if (!is.character(path) || length(path) != 1L || is.na(path))
        fail("'path' must be one file or directory path (or a URI such as s3a://…).")
    if (grepl("^[A-Za-z][A-Za-z0-9+.-]*:", path)) return(path)
    normalizePath(path.expand(path), winslash = "/", mustWork = FALSE)
}

read_df <- function(fmt, path, options, schema, view) {
    full <- abs_path(path)
    opts <- lapply(options, function(v) if (is.logical(v)) tolower(as.character(v))
                                         else as.character(v))
    h <- new_df(pycall("read", spark(), fmt, full, opts, schema),
                paste0(fmt, " ", basename(full)))
    if (!is.null(view)) create_view(h, view)
    h
}

check_view_name <- function(name) {
    if (!is.character(name) || length(name) != 1L || is.na(name) ||
        !grepl("^[A-Za-z_][A-Za-z0-9_]*$", name))
        fail("A view name must be a plain name (letters, digits and _), not ",
             deparse1(name), ": pass name = \"...\" (or name = NULL for no view).")
}

create_view <- function(x, name) {
    check_view_name(name)
    pycall("view", py_df(x), name)
    invisible(x)
}

# ----------------------------------------------------------------------------------------
# collect

as_kind <- function(v, kind, tz) {
    switch(kind,
        integer = as.integer(v),
        double = as.double(v),
        logical = as.logical(v),
        Date = structure(as.double(v), class = "Date"),
        POSIXct = structure(as.double(v) / 1e6, class = c("POSIXct", "POSIXt"),
                            tzone = if (nzchar(tz)) tz else "UTC"),
        as.character(v))
}

parse_column <- function(text, kind, tz) {
    v <- jsonlite::parse_json(text, simplifyVector = TRUE)
    if (kind == "character" && length(v) && !is.character(v)) {
        # jsonlite reads ["NA", "Inf"] as numbers: strings are taken one by one then
        v <- vapply(jsonlite::parse_json(text, simplifyVector = FALSE),
                    function(e) if (is.null(e)) NA_character_ else as.character(e), "")
    }
    if (!length(v)) v <- vector(if (kind %in% c("Date", "POSIXct")) "double" else kind, 0L)
    as_kind(v, kind, tz)
}

collect <- function(x, n = getOption("rspark.collect_max", DEFAULT_COLLECT_MAX), warn = TRUE) {
    if (!is.numeric(n) || length(n) != 1L || is.na(n) || n < 0)
        fail("'n' must be a number of rows >= 0, or Inf for all of them.")
    limit <- if (n >= .Machine$integer.max) NULL else as.integer(n)
    res <- pycall("collect", py_df(x), limit)
    meta <- jsonlite::fromJSON(py_chr(reticulate::py_get_item(res, 0L)))
    texts <- as.character(py_chr(reticulate::py_get_item(res, 1L)))
    cols <- lapply(seq_along(texts), function(i)
        parse_column(texts[[i]], meta$kinds[[i]], meta$tz[[i]]))
    names(cols) <- as.character(unlist(meta$names))
    out <- structure(cols, class = "data.frame", row.names = .set_row_names(meta$rows))
    if (isTRUE(meta$more) && warn)
        warning(sprintf(paste0("rspark_collect() returned the first %d rows; there are more. ",
                               "Use n = Inf for all of them (they must fit in R's memory), or ",
                               "aggregate or filter in Spark first."), limit), call. = FALSE)
    attr(out, "rspark_more") <- if (isTRUE(meta$more)) TRUE else NULL
    out
}

# ----------------------------------------------------------------------------------------
# R data.frame -> Spark

encode_column <- function(v, name) {
    if (is.factor(v)) v <- as.character(v)
    if (inherits(v, "POSIXlt")) v <- as.POSIXct(v)
    if (inherits(v, "Date")) {
        d <- floor(as.double(unclass(v)))
        return(c("Date", num_json(d, integer = TRUE)))
    }
    if (inherits(v, "POSIXct")) return(c("POSIXct", num_json(as.double(unclass(v)))))
    if (is.object(v) && !is.character(v) && !is.numeric(v) && !is.logical(v))
        fail("Column '", name, "' has class ", class(v)[1L], ": convert it to numbers, ",
             "text, logical, Date or POSIXct first.")
    switch(typeof(v),
        logical = c("logical", as.character(jsonlite::toJSON(unclass(v), na = "null"))),
        integer = c("integer", num_json(unclass(v), integer = TRUE)),
        double = c("double", num_json(unclass(v))),
        character = c("character", as.character(jsonlite::toJSON(enc2utf8(unclass(v)),
                                                                  na = "null"))),
        fail("Column '", name, "' is of type ", typeof(v), ": only logical, integer, double, ",
             "character, factor, Date and POSIXct columns can be sent to Spark."))
}

num_json <- function(v, integer = FALSE) {
    s <- if (is.integer(v)) as.character(v) else sprintf(if (integer) "%.0f" else "%.17g", v)
    s[is.na(v)] <- "null"
    if (!integer) {
        s[is.nan(v)] <- "\"NaN\""
        s[!is.na(v) & v == Inf] <- "\"Inf\""
        s[!is.na(v) & v == -Inf] <- "\"-Inf\""
    }
    paste0("[", paste(s, collapse = ","), "]")
}

copy_to <- function(data, name) {
    if (!is.data.frame(data)) fail("'data' must be a data.frame.")
    if (!is.null(name)) check_view_name(name)
    if (!ncol(data)) fail("'data' has no columns.")
    nms <- names(data)
    if (anyNA(nms) || any(!nzchar(nms)) || anyDuplicated(nms))
        fail("The columns of 'data' need unique, non-empty names.")
    enc <- vapply(seq_along(data), function(i) encode_column(data[[i]], nms[i]), character(2))
    pydf <- pycall("from_columns", spark(), as.list(enc2utf8(nms)), as.list(enc[1L, ]),
                   as.list(enc[2L, ]))
    h <- new_df(pydf, if (is.null(name)) "an R data.frame" else paste0("R data.frame ", name))
    if (!is.null(name)) create_view(h, name)
    h
}

# ----------------------------------------------------------------------------------------
# GLM (Spark ML: RFormula + GeneralizedLinearRegression)

glm <- function(data, formula, family, link, max_iter, reg_param) {
    f <- if (inherits(formula, "formula")) paste(deparse(formula, width.cutoff = 500L),
                                                 collapse = " ") else as.character(formula)
    if (length(f) != 1L || !grepl("~", f, fixed = TRUE))
        fail("'formula' must be a formula such as y ~ x1 + x2.")
    res <- pycall("glm_fit", py_df(data), f, family, link, max_iter, reg_param)
    s <- jsonlite::fromJSON(py_chr(reticulate::py_get_item(res, 2L)))
    ref <- new.env(parent = emptyenv())
    ref$rformula <- reticulate::py_get_item(res, 0L)
    ref$model <- reticulate::py_get_item(res, 1L)
    coefs <- stats::setNames(as.double(s$estimate), s$names)
    tab <- NULL
    if (!is.null(s$std_error)) {
        tab <- cbind(Estimate = coefs, `Std. Error` = s$std_error, stat = s$statistic,
                     p = s$p_value)
        z <- s$family %in% c("binomial", "poisson")
        colnames(tab)[3:4] <- if (z) c("z value", "Pr(>|z|)") else c("t value", "Pr(>|t|)")
        rownames(tab) <- s$names
    }
    label <- sprintf("Spark GLM (%s%s): %s", s$family,
                     if (is.null(s$link)) "" else paste0(", link ", s$link), f)
    structure(list(coefficients = coefs, coef_table = tab, formula = f, family = s$family,
                   link = s$link, n = s$n, aic = s$aic, deviance = s$deviance,
                   null_deviance = s$null_deviance, df_residual = s$df_residual,
                   dispersion = s$dispersion, iterations = s$iterations,
                   ref = ref, gen = state$gen, label = label), class = "rspark_glm")
}

glm_predict <- function(object, newdata) {
    if (!identical(object$gen, state$gen))
        fail("This model belongs to an earlier Spark connection: fit it again.")
    new_df(pycall("glm_predict", object$ref$rformula, object$ref$model, py_df(newdata)),
           paste("predictions of", object$formula))
}

environment()
}, envir = new.env(parent = .BaseNamespaceEnv))

# ------------------------------------------------------------------------------------------
# The public functions (documented in docs/spark.md).

api <- list(
    rspark_connect = function(remote = Sys.getenv("SPARK_REMOTE"), timeout = 120) {
        impl$connect(remote, timeout)
    },
    rspark_disconnect = function(release = FALSE) impl$disconnect(release),
    rspark_sql = function(query) {
        if (!is.character(query) || length(query) != 1L || is.na(query))
            impl$fail("'query' must be one SQL string.")
        impl$new_df(impl$pycall("sql", impl$spark(), query), paste0("SQL: ", impl$short(query)))
    },
    rspark_table = function(name) {
        impl$new_df(impl$pycall("table", impl$spark(), name), paste0("table ", name))
    },
    rspark_read_csv = function(path, header = TRUE, infer_schema = is.null(schema), sep = ",",
                               schema = NULL, view = NULL, options = list()) {
        opts <- utils::modifyList(list(header = header, inferSchema = infer_schema, sep = sep),
                                  as.list(options))
        impl$read_df("csv", path, opts, schema, view)
    },
    rspark_read_parquet = function(path, view = NULL) {
        impl$read_df("parquet", path, list(), NULL, view)
    },
    rspark_collect = function(x, n = getOption("rspark.collect_max", 1e5)) impl$collect(x, n),
    rspark_count = function(x) impl$py_chr(impl$pycall("count", impl$py_df(x))),
    rspark_schema = function(x) {
        impl$py_df(x)
        data.frame(column = names(x$schema), type = unname(x$schema), stringsAsFactors = FALSE)
    },
    rspark_view = function(x, name) impl$create_view(x, name),
    rspark_copy_to = function(data, name = deparse1(substitute(data))) {
        impl$copy_to(data, name)
    },
    rspark_save_table = function(x, name, mode = c("error", "overwrite", "append", "ignore")) {
        mode <- match.arg(mode)
        impl$pycall("save_table", impl$py_df(x), name, mode)
        invisible(impl$new_df(impl$pycall("table", impl$spark(), name), paste0("table ", name)))
    },
    rspark_write_parquet = function(x, path, mode = c("error", "overwrite", "append", "ignore")) {
        mode <- match.arg(mode)
        impl$pycall("write", impl$py_df(x), "parquet", impl$abs_path(path), mode)
        invisible(x)
    },
    rspark_tables = function(database = NULL) {
        rows <- jsonlite::fromJSON(impl$py_chr(impl$pycall("tables", impl$spark(), database)),
                                   simplifyVector = TRUE)
        if (!length(rows))
            return(data.frame(name = character(), database = character(), type = character(),
                              temporary = logical(), stringsAsFactors = FALSE))
        rows <- as.data.frame(rows, stringsAsFactors = FALSE)
        rows[order(rows$temporary, rows$name), c("name", "database", "type", "temporary")]
    },
    rspark_glm = function(data, formula, family = c("gaussian", "binomial", "poisson", "gamma",
                                                    "tweedie"),
                          link = NULL, max_iter = 25L, reg_param = 0) {
        impl$glm(data, formula, match.arg(family), link, max_iter, reg_param)
    },
    rspark_session = function() impl$spark(),
    rspark_py = function(x) impl$py_df(x),
    rspark_wrap = function(df, source = "Python") impl$new_df(df, source)
)

methods <- list(
    print.rspark_df = function(x, n = impl$PREVIEW_ROWS, ...) {
        cat("# ", x$label, "\n", sep = "")
        rows <- tryCatch(impl$collect(x, n, warn = FALSE), error = function(e) e)
        if (inherits(rows, "error")) {
            cat("# (no preview: ", conditionMessage(rows), ")\n", sep = "")
        } else {
            print(rows)
            if (isTRUE(attr(rows, "rspark_more")))
                cat("# \u2026 more rows: rspark_collect(x) gets them, rspark_count(x) counts\n")
        }
        invisible(x)
    },
    head.rspark_df = function(x, n = 6L, ...) impl$collect(x, n, warn = FALSE),
    print.rspark_glm = function(x, ...) {
        cat(x$label, "\n", sep = "")
        cat(x$n, " rows", if (!is.null(x$aic)) sprintf("; AIC %.6g", x$aic),
            sprintf("; deviance %.6g on %d residual degrees of freedom (null %.6g)\n\n",
                    x$deviance, as.integer(x$df_residual), x$null_deviance), sep = "")
        if (is.null(x$coef_table)) print(x$coefficients)
        else stats::printCoefmat(x$coef_table, digits = 4L)
        invisible(x)
    },
    summary.rspark_glm = function(object, ...) object,
    predict.rspark_glm = function(object, newdata, ...) impl$glm_predict(object, newdata)
)

for (nm in names(api)) assign(nm, api[[nm]], envir = target)
for (nm in names(methods)) assign(nm, methods[[nm]], envir = target)
registerS3method("print", "rspark_df", methods$print.rspark_df, envir = baseenv())
registerS3method("head", "rspark_df", methods$head.rspark_df, envir = asNamespace("utils"))
registerS3method("print", "rspark_glm", methods$print.rspark_glm, envir = baseenv())
registerS3method("summary", "rspark_glm", methods$summary.rspark_glm, envir = baseenv())
registerS3method("predict", "rspark_glm", methods$predict.rspark_glm,
                 envir = asNamespace("stats"))
invisible(NULL)
})(environment())
