# Kernel-side session introspection for R sessions (IRkernel): the R half of
# docs/introspection-contract.md.
#
# The agent loads this file silently when an R kernel starts (agent/introspect.py
# `r_tools`), into an environment of its own whose parent is the base namespace — its byte
# code compiled at install if there is one, else the source (r/load.R):
#
#     local({ e <- attach(NULL, name = "tools:rsparkhub")
#             h <- new.env(parent = .BaseNamespaceEnv)
#             sys.source("/abs/path/rsparkhub.R", envir = h, keep.source = FALSE)
#             assign(".rsparkhub", h, envir = e) })
#
# and then asks questions with silent execute requests:
#
#     .rsparkhub$call("METHOD", "ARGS_JSON", "OUT_PATH")
#
# `call` never raises and never prints; it writes one UTF-8 JSON document to OUT_PATH
# (via OUT_PATH.tmp + rename) and returns invisible(NULL).
#
# Layout. The attached environment `tools:rsparkhub` holds exactly one binding, `.rsparkhub`:
# the environment holding `call`, the methods and their state. Everything lives one level down
# so that nothing we define masks a function further down the search path for user code (a
# top-level `call` in tools:rsparkhub would mask base::call for everything typed at the
# console). The implementation environment's parent is the base namespace, so every function
# from another package is called as pkg::fun; a user variable named like a utils/stats/
# grDevices function cannot break us. The file also works in plain Rscript (no IRkernel): the
# kernel hooks are then skipped, which is how the unit tests drive most methods.
#
# User state is left alone by every method (see `guard_enter`/`guard_exit`): options are
# restored, `.Random.seed` is restored (sampling is deterministic anyway), the current
# graphics device is restored, warnings and messages are muffled, output is captured and
# dropped. `.Last.value` and the execution count are untouched because the agent uses silent
# execute requests (IRkernel then neither prints nor calls set_last_value).
#
# Listings never walk the data: sizes are computed from lengths (exact for atomic vectors,
# sampled for long character vectors and lists, per column for data frames) within a time
# budget per object, previews look at the first elements only, and plain scalars and
# vectors are summarised vectorised. Diffs compare cheap fingerprints (see `fingerprint`).
#
# Kernel hooks (IRkernel only, `install_hooks`): a help display mimetype for `?topic` /
# `??words` pages and a plot mimetype whose value is a key to the recorded plot, kept for
# `plot_render`.

HELP_MIME <- "application/vnd.rsparkhub.help+json"
PLOT_MIME <- "application/vnd.rsparkhub.plot+json"
MAX_PLOTS <- 50L
BUDGET <- 0.02            # seconds per object for size / preview work
PREVIEW_MAX <- 200L       # characters of a one-line preview
PREVIEW_ELTS <- 10L       # elements shown in a vector preview
REF_MAX_LEN <- 4096L      # vectors up to this length are kept alive by the diff baseline
SIZE_SAMPLE <- 1000L      # elements sampled for size estimates of long character vectors / lists
CHILDREN_LIMIT <- 100L
ROWS_LIMIT <- 1000L
CELL_MAX <- 200L          # characters of an "anything else" cell
STRING_CELL_MAX <- 10000L # characters of a character cell

state <- new.env(parent = emptyenv())
state$version <- 0L
# name -> fingerprint, as of the last env_list/env_diff
state$base_fp <- structure(character(), names = character())
state$base_refs <- list()       # name -> value, kept alive so addresses cannot be reused
state$views <- new.env(parent = emptyenv())
state$view_seq <- 0L
state$plots <- list()           # key -> recordedplot (the last MAX_PLOTS)
state$plot_seq <- 0L

# ----------------------------------------------------------------------------------------
# errors, JSON, state guard

fail <- function(code, message) {
    stop(structure(class = c("rsparkhub_error", "error", "condition"),
                   list(message = message, call = NULL, code = code)))
}

`%||%` <- function(a, b) if (is.null(a)) b else a

# A JSON text to embed verbatim (jsonlite's json_verbatim).
verbatim <- function(s) structure(s, class = "json")

to_json <- function(x) {
    s <- jsonlite::toJSON(x, auto_unbox = TRUE, null = "null", na = "null", digits = NA,
                          json_verbatim = TRUE)
    enc2utf8(as.character(s))
}

# JSON string tokens for a character vector (NA -> null).
json_str <- if (exists("deparse_vector", envir = asNamespace("jsonlite"), inherits = FALSE)) {
    function(s) {
        s <- enc2utf8(as.character(s))
        out <- jsonlite:::deparse_vector(s)
        out[is.na(s)] <- "null"
        out
    }
} else {
    function(s) {
        s <- enc2utf8(as.character(s))
        out <- vapply(s, function(v) as.character(jsonlite::toJSON(v, auto_unbox = TRUE)), "",
                      USE.NAMES = FALSE)
        out[is.na(s)] <- "null"
        out
    }
}

json_bool <- function(b) ifelse(is.na(b), "null", ifelse(b, "true", "false"))

# JSON number tokens for doubles: shortest of 15/17 significant digits that round-trips;
# NA -> null, NaN/Inf/-Inf -> strings.
json_num <- function(x) {
    x <- as.double(x)
    out <- sprintf("%.15g", x)
    fin <- is.finite(x)
    bad <- which(fin)[as.double(out[fin]) != x[fin]]
    if (length(bad)) out[bad] <- sprintf("%.17g", x[bad])
    out[is.na(x)] <- "null"
    out[is.nan(x)] <- "\"NaN\""
    out[x %in% Inf] <- "\"Inf\""
    out[x %in% -Inf] <- "\"-Inf\""
    out
}

json_int <- function(x) {
    out <- as.character(x)
    out[is.na(x)] <- "null"
    out
}

json_array <- function(tokens) paste0("[", paste(tokens, collapse = ","), "]")

write_result <- function(res, path) {
    txt <- to_json(res)
    tmp <- paste0(path, ".tmp")
    con <- file(tmp, open = "wb")
    ok <- FALSE
    on.exit(if (!ok) try(close(con), silent = TRUE))
    writeBin(charToRaw(txt), con)
    close(con)
    ok <- TRUE
    file.rename(tmp, path)
}

guard_enter <- function() {
    ge <- globalenv()
    list(opts = options(),
         ns = loadedNamespaces(),
         seed_exists = exists(".Random.seed", envir = ge, inherits = FALSE),
         seed = get0(".Random.seed", envir = ge, inherits = FALSE),
         dev = grDevices::dev.cur(),
         sinks = sink.number())
}

guard_exit <- function(g, restore_seed = TRUE) {
    while (sink.number() > g$sinks) sink()
    now <- options()
    added <- setdiff(names(now), names(g$opts))
    # options named after a package loaded meanwhile stay (datatable.verbose for data.table):
    # its .onLoad set them and does not run again, and without them it is broken for the
    # rest of the session, as data.table was after the viewer loaded it
    loaded <- gsub("[^a-z0-9]", "", tolower(setdiff(loadedNamespaces(), g$ns)))
    for (p in loaded[nzchar(loaded)])
        added <- added[!startsWith(gsub("[^a-z0-9]", "", tolower(added)), p)]
    if (length(added)) options(structure(vector("list", length(added)), names = added))
    old <- names(g$opts)
    same <- vapply(old, function(n) identical(now[[n]], g$opts[[n]]), NA, USE.NAMES = FALSE)
    if (!all(same)) options(g$opts[old[!same]])
    if (restore_seed) {
        ge <- globalenv()
        has <- exists(".Random.seed", envir = ge, inherits = FALSE)
        if (g$seed_exists) {
            if (!has || !identical(get(".Random.seed", envir = ge), g$seed))
                assign(".Random.seed", g$seed, envir = ge)
        } else if (has) {
            rm(list = ".Random.seed", envir = ge)
        }
    }
    if (!identical(grDevices::dev.cur(), g$dev) && g$dev > 1L &&
        g$dev %in% grDevices::dev.list())
        grDevices::dev.set(g$dev)
    invisible(NULL)
}

# The entry point: `.rsparkhub$call(method, args_json, out_path)`.
call <- function(method, args_json = "{}", out_path = NULL) {
    g <- tryCatch(guard_enter(), error = function(e) NULL)
    keep_seed <- FALSE
    res <- tryCatch({
        out <- NULL
        utils::capture.output(out <- withCallingHandlers({
            args <- if (is.character(args_json) && length(args_json) == 1L &&
                        nzchar(args_json))
                jsonlite::fromJSON(args_json, simplifyVector = FALSE) else list()
            if (!is.list(args)) args <- list()
            fn <- if (is.character(method) && length(method) == 1L) METHODS[[method]]
            if (!is.function(fn))
                fail("unknown_method", sprintf("Unknown introspection method '%s'.",
                                               paste(method, collapse = " ")))
            fn(args)
        }, warning = function(w) invokeRestart("muffleWarning"),
           message = function(m) invokeRestart("muffleMessage")))
        if (isTRUE(attr(out, "keep_seed"))) {
            keep_seed <- TRUE
            attr(out, "keep_seed") <- NULL
        }
        list(ok = TRUE, result = out)
    }, rsparkhub_error = function(e) {
        list(ok = FALSE, error = list(code = e$code, message = conditionMessage(e)))
    }, error = function(e) {
        list(ok = FALSE, error = list(code = "internal_error",
                                      message = paste0("Internal error: ",
                                                       conditionMessage(e))))
    })
    if (!is.null(g)) try(guard_exit(g, restore_seed = !keep_seed), silent = TRUE)
    if (!is.null(out_path))
        try(write_result(res, out_path), silent = TRUE)
    invisible(NULL)
}

arg_flag <- function(args, name, default = FALSE) {
    v <- args[[name]]
    if (is.null(v)) default else isTRUE(as.logical(v))
}

arg_int <- function(args, name, default, min = 0L, max = .Machine$integer.max) {
    v <- args[[name]]
    if (is.null(v)) return(default)
    v <- suppressWarnings(as.numeric(v))
    if (length(v) != 1L || is.na(v))
        fail("invalid_argument", sprintf("'%s' must be a number.", name))
    as.integer(min(max(v, min), max))
}

arg_str <- function(args, name, required = TRUE) {
    v <- args[[name]]
    if (is.null(v)) {
        if (required) fail("invalid_argument", sprintf("'%s' is required.", name))
        return(NULL)
    }
    if (!is.character(v) || length(v) != 1L || is.na(v))
        fail("invalid_argument", sprintf("'%s' must be a string.", name))
    v
}

# ----------------------------------------------------------------------------------------
# sizes: cheap, never proportional to the data (exact for atomic non-character vectors,
# sampled for long character vectors and long lists, per column for data frames; NA when the
# per-object time budget is exceeded)

ELT_BYTES <- c(logical = 4, integer = 4, double = 8, complex = 16, raw = 1, character = 8,
               list = 8, expression = 8)

# utils::object.size of a vector without attributes: 48-byte header + data, small vectors
# rounded up to R's allocation classes.
vec_bytes <- function(tp, n) {
    nb <- as.double(n) * ELT_BYTES[[tp]]
    a <- if (nb == 0) 0 else if (nb <= 8) 8 else if (nb <= 16) 16 else if (nb <= 32) 32 else
        if (nb <= 48) 48 else if (nb <= 64) 64 else if (nb <= 128) 128 else 8 * ceiling(nb / 8)
    48 + a
}

# vec_bytes for many vectors at once, from their data sizes in bytes.
vec_bytes_v <- function(nb) {
    a <- ifelse(nb == 0, 0, ifelse(nb <= 8, 8, ifelse(nb <= 16, 16, ifelse(nb <= 32, 32,
         ifelse(nb <= 48, 48, ifelse(nb <= 64, 64, ifelse(nb <= 128, 128, 8 * ceiling(nb / 8))))))))
    48 + a
}

# CPU seconds of this process, not counting garbage collection (a full collection with big
# character vectors in memory takes long and is not work of ours). CPU time, not wall time:
# a budget measures our work, which a busy machine's scheduler must not cut short.
clock <- function() {
    p <- proc.time()
    g <- gc.time()
    p[[1L]] + p[[2L]] - g[[1L]] - g[[2L]]
}

sample_positions <- function(n, k) {
    if (n <= k) return(seq_len(n))
    unique(as.integer(round(seq(1, n, length.out = k))))
}

NUMERIC_TYPES <- c("logical", "integer", "double", "complex", "raw")

# c(bytes, estimated); bytes NA when over budget (checked by the outermost call and in
# loops).
size_of <- function(x, deadline, top = TRUE) {
    tp <- typeof(x)
    if (tp == "NULL") return(c(0, 0))
    if (tp == "environment") return(c(NA, 0))
    a <- attributes(x)
    if (is.null(a)) {  # plain vectors: the common case, quickly
        if (tp %in% NUMERIC_TYPES) return(c(vec_bytes(tp, length(x)), 0))
        if (tp == "character" && length(x) <= 2000L)
            return(c(as.double(utils::object.size(x)), 0))
    }
    if (is.data.frame(x)) a$row.names <- .row_names_info(x, 0L)
    est <- 0
    if (tp %in% NUMERIC_TYPES) {
        core <- vec_bytes(tp, unclass_len(x))
    } else if (tp == "character") {
        n <- unclass_len(x)
        if (n <= 2000L) {
            core <- if (is.null(a)) as.double(utils::object.size(x))
                    else as.double(utils::object.size(as.character(x)))
        } else {
            pos <- sample_positions(n, SIZE_SAMPLE)
            s <- as.character(.subset(x, pos))
            chars <- as.double(utils::object.size(s)) - vec_bytes("character", length(s))
            if (length(unique(s)) > length(s) / 2) chars <- chars * n / length(s)
            core <- vec_bytes("character", n) + chars
            est <- 1
        }
    } else if (tp %in% c("list", "expression")) {
        n <- unclass_len(x)
        core <- vec_bytes(tp, n)
        pos <- sample_positions(n, SIZE_SAMPLE)
        els <- .subset(x, pos)
        total <- 0
        slow <- seq_along(els)
        if (length(els) > 16L) {
            # plain non-character atomic elements at once, the rest one by one
            etp <- vapply(els, typeof, "", USE.NAMES = FALSE)
            fast <- etp %in% NUMERIC_TYPES &
                vapply(els, function(e) is.null(attributes(e)), NA, USE.NAMES = FALSE)
            if (any(fast))
                total <- sum(vec_bytes_v(lengths(els[fast], use.names = FALSE) *
                                         ELT_BYTES[etp[fast]]))
            slow <- which(!fast)
        }
        for (i in seq_along(slow)) {
            s <- size_of(.subset2(els, slow[i]), deadline, FALSE)
            if (is.na(s[1L])) return(c(NA, 0))
            total <- total + s[1L]
            if (s[2L] > 0) est <- 1
            if (i %% 32L == 0L && clock() > deadline) return(c(NA, 0))
        }
        if (length(pos) < n) {
            total <- total * n / length(pos)
            est <- 1
        }
        core <- core + total
    } else if (tp == "S4") {
        core <- 56
    } else {
        # functions, language, symbols, pointers: small or irrelevant; object.size is exact
        return(c(tryCatch(as.double(utils::object.size(x)), error = function(e) NA), 0))
    }
    if (length(a)) {
        for (v in a) {
            s <- size_of(v, deadline, FALSE)
            if (is.na(s[1L])) return(c(NA, 0))
            core <- core + 112 + s[1L]
            if (s[2L] > 0) est <- 1
        }
    }
    if (top && clock() > deadline) return(c(NA, 0))
    c(core, est)
}

# Length of the underlying vector: no length() method for classed lists (POSIXlt, vctrs
# records...; unclass() of a list is a shallow copy); atomic vectors keep length(), since
# unclass() would copy the data and their classes do not redefine length().
unclass_len <- function(x) if (is.object(x) && is.list(x)) length(unclass(x)) else length(x)

# ----------------------------------------------------------------------------------------
# previews

ABBR <- c(logical = "logi", integer = "int", double = "num", complex = "cplx",
          character = "chr", raw = "raw")

SHORT_STR <- 60L          # characters of one string element in a preview

short_str <- function(s, n = SHORT_STR) {
    long <- !is.na(s) & nchar(s, allowNA = TRUE) > n
    s[long] <- paste0(substr(s[long], 1L, n - 1L), "\u2026")
    s
}

fmt_plain <- function(v, tp, scalar) {
    out <- switch(tp,
        double = if (scalar) as.character(v) else as.character(signif(v, 3L)),
        complex = if (scalar) as.character(v) else as.character(signif(v, 3L)),
        character = encodeString(short_str(v), quote = "\""),
        raw = as.character(v),
        as.character(v))
    out[is.na(out)] <- "NA"
    out
}

dims_label <- function(d) paste0("[", paste(ifelse(d > 0, paste0("1:", d), "0"),
                                            collapse = ", "), "]")

more <- function(n, k) if (n > k) " \u2026" else ""

preview_atomic <- function(x, tp, n, d) {
    k <- min(n, PREVIEW_ELTS)
    h <- .subset(x, seq_len(k))
    if (!is.null(d)) {
        return(paste0(ABBR[[tp]], " ", dims_label(d), " ",
                      paste(fmt_plain(h, tp, FALSE), collapse = " "), more(n, k)))
    }
    named <- !is.null(names(x))
    if (n == 1L && !named) {
        v <- fmt_plain(h, tp, TRUE)
        return(if (tp == "integer" && !is.na(x)) paste0(v, "L") else v)
    }
    paste0(if (named) "Named " else "", ABBR[[tp]], if (n == 1L) "" else paste0(" [1:", n, "]"),
           if (n > 0L) " " else "", paste(fmt_plain(h, tp, n == 1L), collapse = " "), more(n, k))
}

preview_factor <- function(x, n) {
    lev <- levels(x)
    nl <- length(lev)
    shown <- encodeString(short_str(lev[seq_len(min(nl, 5L))], 30L), quote = "\"")
    sep <- if (is.ordered(x)) "<" else ","
    k <- min(n, PREVIEW_ELTS)
    codes <- as.character(.subset(x, seq_len(k)))
    codes[is.na(codes)] <- "NA"
    paste0(if (is.ordered(x)) "Ord.factor" else "Factor", " w/ ", nl,
           if (nl == 1L) " level " else " levels ", paste(shown, collapse = sep),
           if (nl > 5L) paste0(sep, "..") else "", ": ", paste(codes, collapse = " "), more(n, k))
}

preview_classed <- function(x, n) {
    k <- min(n, PREVIEW_ELTS)
    h <- x[seq_len(k)]
    cl <- class(x)[1L]
    vals <- tryCatch(format(h), error = function(e) fmt_plain(unclass(h), typeof(h), FALSE))
    if (inherits(x, c("Date", "POSIXct", "POSIXlt")))
        return(paste0(cl, "[1:", n, "], format: ",
                      paste(encodeString(as.character(vals), quote = "\""), collapse = " "),
                      more(n, k)))
    paste0(cl, " [1:", n, "] ", paste(as.character(vals), collapse = " "), more(n, k))
}

preview_function <- function(f) {
    a <- tryCatch(args(f), error = function(e) NULL)
    if (is.null(a)) return(if (is.primitive(f)) "function (...) <primitive>" else "function (...)")
    d <- deparse(a, width.cutoff = 500L, nlines = 20L)
    if (length(d) > 1L && trimws(d[length(d)]) == "NULL") d <- d[-length(d)]
    paste(trimws(d), collapse = " ")
}

preview_other <- function(x, tp) {
    switch(tp,
        symbol = as.character(x),
        language = paste(deparse(x, width.cutoff = 200L, nlines = 1L), collapse = " "),
        externalptr = "<pointer>",
        weakref = "<weak reference>",
        bytecode = "<bytecode>",
        pairlist = paste0("Dotted pair list of ", length(x)),
        promise = "<promise>",
        paste0("<", tp, ">"))
}

# ----------------------------------------------------------------------------------------
# variable summaries

df_dims <- function(x) c(.row_names_info(x, 2L), unclass_len(x))

safe_length <- function(x) {
    if (!is.object(x)) return(length(x))
    n <- tryCatch(length(x), error = function(e) NA_integer_)
    if (length(n) != 1L || !is.numeric(n)) NA_integer_ else n
}

# A summary of one value: list(type, kind, size, size_estimated, length, dims, preview,
# preview_truncated, tabular, has_children).
describe <- function(x) {
    deadline <- clock() + BUDGET
    tp <- typeof(x)
    cls <- class(x)
    type <- cls[1L]
    len <- NA_integer_
    d <- NULL
    tabular <- FALSE
    children <- FALSE
    size <- NA
    est <- 0
    kind <- "other"
    pv <- tryCatch({
        if (tp == "NULL") {
            kind <- "null"; len <- 0L; size <- 0
            "NULL"
        } else if (tp == "list" && inherits(x, c("rspark_df", "rspark_glm"))) {
            kind <- "object"; len <- 1L  # Spark handles (spark.R): their label, no query
            as.character(.subset2(x, "label"))[1L]
        } else if (is.data.frame(x)) {
            kind <- "table"; d <- df_dims(x); len <- d[2L]; tabular <- TRUE
            children <- d[2L] > 0L
            paste0(d[1L], " obs. of ", d[2L], if (d[2L] == 1L) " variable" else " variables")
        } else if (is.factor(x)) {
            kind <- "factor"; len <- unclass_len(x)
            preview_factor(x, len)
        } else if (tp %in% names(ABBR)) {
            d <- attr(x, "dim", exact = TRUE)
            if (!is.null(d) && length(d) >= 2L) {
                kind <- "matrix"; len <- unclass_len(x); tabular <- length(d) == 2L
                if (is.object(x) && !inherits(x, c("matrix", "array", "table"))) type <- cls[1L]
                preview_atomic(x, tp, len, d)
            } else {
                len <- if (is.object(x)) safe_length(x) else length(x)
                kind <- if (identical(len, 1L)) "value" else "vector"
                if (!is.null(d)) d <- NULL
                if (is.object(x) && !is.na(len)) preview_classed(x, len)
                else preview_atomic(x, tp, unclass_len(x), NULL)
            }
        } else if (tp %in% c("list", "expression")) {
            if (inherits(x, "POSIXlt")) {
                len <- safe_length(x); kind <- if (identical(len, 1L)) "value" else "vector"
                preview_classed(x, len)
            } else {
                len <- unclass_len(x)
                d <- attr(x, "dim", exact = TRUE)
                kind <- if (!is.null(d) && length(d) >= 2L) "matrix" else "list"
                if (kind == "list") d <- NULL
                children <- len > 0L
                if (tp == "expression") paste0("expression of length ", len)
                else if (!is.null(d)) paste0("List ", dims_label(d))
                else paste0("List of ", len)
            }
        } else if (tp %in% c("closure", "builtin", "special")) {
            kind <- "function"; type <- "function"; len <- 1L
            preview_function(x)
        } else if (tp == "environment") {
            n <- length(x)
            len <- n
            children <- n > 0L
            if (inherits(x, "R6ClassGenerator")) {
                kind <- "class"
                paste0("R6 class generator <", x$classname %||% "?", ">")
            } else if (inherits(x, "R6")) {
                kind <- "object"
                members <- length(ls(x, sorted = FALSE))
                paste0("R6 object of class ", cls[1L], " with ", members,
                       if (members == 1L) " member" else " members")
            } else {
                kind <- if (is.object(x)) "object" else "environment"
                paste0("<environment> with ", n, if (n == 1L) " object" else " objects")
            }
        } else if (tp == "S4") {
            kind <- "object"
            slots <- tryCatch(methods::slotNames(x), error = function(e) character())
            children <- length(slots) > 0L
            pkg <- attr(cls, "package") %||% ""
            paste0("Formal class '", cls[1L], "' [package \"", pkg, "\"] with ",
                   length(slots), if (length(slots) == 1L) " slot" else " slots")
        } else {
            if (tp %in% c("language", "symbol", "pairlist")) len <- safe_length(x)
            preview_other(x, tp)
        }
    }, error = function(e) paste0("<", type, ">"))
    if (is.na(size) && tp != "NULL") {
        s <- tryCatch(size_of(x, deadline), error = function(e) c(NA, 0))
        size <- s[1L]; est <- s[2L]
    }
    cut <- tp == "character" && !is.na(len) && len > 0L &&
        isTRUE(any(nchar(.subset(x, seq_len(min(len, PREVIEW_ELTS))), allowNA = TRUE) > SHORT_STR,
                   na.rm = TRUE))
    list(type = type, kind = kind, size = size, size_estimated = est > 0,
         length = if (is.na(len)) NA_real_ else as.double(len),
         dims = if (is.null(d)) NULL else as.double(d), preview = pv,
         preview_truncated = cut || clock() > deadline + BUDGET,
         tabular = tabular, has_children = children)
}

IMPLICIT_CLASS <- c(logical = "logical", integer = "integer", double = "numeric",
                    complex = "complex", character = "character", raw = "raw")
SCALAR_TYPES <- c("logical", "integer", "double", "complex", "character")

# Summaries of many values at once, as columns (type, kind, size, size_estimated, length,
# dims, preview, preview_truncated, tabular, has_children). `binds` gives each binding's kind
# ("value", "active", "lazy"); plain scalars (no attributes) are summarised vectorised, the
# rest one by one with `describe`.
describe_values <- function(vals, binds = rep.int("value", length(vals))) {
    n <- length(vals)
    out <- list(type = character(n), kind = character(n), size = rep(NA_real_, n),
                size_estimated = logical(n), length = rep(NA_real_, n),
                dims = vector("list", n), preview = character(n),
                preview_truncated = logical(n), tabular = logical(n),
                has_children = logical(n))
    if (!n) return(out)
    if (!isTRUE(state$warm)) warm_up()
    isval <- binds == "value"
    tp <- vapply(vals, typeof, "", USE.NAMES = FALSE)
    plain <- vapply(vals, function(x) is.null(attributes(x)), NA, USE.NAMES = FALSE)
    lens <- integer(n)
    pa <- isval & plain & tp %in% names(ABBR)
    lens[pa] <- lengths(vals[pa], use.names = FALSE)
    sc <- pa & tp %in% SCALAR_TYPES & lens == 1L
    if (any(sc)) {
        w <- which(sc)
        t <- tp[w]
        out$type[w] <- IMPLICIT_CLASS[t]
        out$kind[w] <- "value"
        out$length[w] <- 1
        pv <- character(length(w))
        sz <- numeric(length(w))
        for (ty in unique(t)) {
            k <- t == ty
            v <- unlist(vals[w[k]], use.names = FALSE)
            pv[k] <- switch(ty,
                integer = ifelse(is.na(v), "NA", paste0(v, "L")),
                character = encodeString(short_str(v), quote = "\""),
                { s <- as.character(v); s[is.na(s)] <- "NA"; s })
            sz[k] <- switch(ty,
                complex = 64,
                character = 56 + ifelse(is.na(v), 0, vec_bytes_v(nchar(v, "bytes") + 1)),
                56)
        }
        out$preview[w] <- pv
        out$size[w] <- sz
        chr <- w[t == "character"]
        if (length(chr))
            out$preview_truncated[chr] <- !is.na(cl <- nchar(unlist(vals[chr], use.names = FALSE),
                                                            allowNA = TRUE)) & cl > SHORT_STR
    }
    # plain atomic vectors (no attributes, not too long for an exact character size)
    vec <- pa & !sc & (tp != "character" | lens <= 2000L)
    if (any(vec)) {
        w <- which(vec)
        t <- tp[w]
        nn <- lens[w]
        out$type[w] <- IMPLICIT_CLASS[t]
        out$kind[w] <- ifelse(nn == 1L, "value", "vector")
        out$length[w] <- nn
        kk <- pmin(nn, PREVIEW_ELTS)
        sz <- vec_bytes_v(as.double(nn) * ELT_BYTES[t])
        joined <- character(length(w))
        for (ty in unique(t)) {
            k <- which(t == ty)
            heads <- lapply(k, function(j) .subset(vals[[w[j]]], seq_len(kk[j])))
            f <- fmt_plain(unlist(heads, use.names = FALSE), ty, FALSE)
            ends <- cumsum(kk[k])
            starts <- ends - kk[k] + 1L
            jk <- f[starts]
            for (q in seq_len(max(0L, max(kk[k]) - 1L))) {
                has <- kk[k] > q
                jk[has] <- paste(jk[has], f[starts[has] + q])
            }
            jk[kk[k] == 0L] <- ""
            joined[k] <- jk
            if (ty == "character") {
                sz[k] <- vapply(vals[w[k]], function(x) as.double(utils::object.size(x)), 0,
                                USE.NAMES = FALSE)
                long <- nchar(unlist(heads, use.names = FALSE), allowNA = TRUE) > SHORT_STR
                long[is.na(long)] <- FALSE
                out$preview_truncated[w[k]] <- vapply(seq_along(k), function(j)
                    any(long[seq.int(starts[j], length.out = kk[k][j])]), NA)
            }
        }
        out$preview[w] <- ifelse(nn == 0L, paste0(ABBR[t], "(0)"),
                                 paste0(ABBR[t], ifelse(nn == 1L, " ", paste0(" [1:", nn, "] ")),
                                        joined, ifelse(nn > kk, " \u2026", "")))
        out$size[w] <- sz
        sc <- sc | vec
    }
    rest <- which(!sc)
    if (length(rest)) {
        ds <- lapply(rest, function(i)
            if (isval[i]) describe(vals[[i]]) else describe_binding(binds[i]))
        for (f in names(out)) {
            col <- lapply(ds, `[[`, f)
            if (f == "dims") {
                out$dims[rest] <- col
            } else {
                has <- !vapply(col, is.null, NA, USE.NAMES = FALSE)
                out[[f]][rest[has]] <- unlist(col[has], use.names = FALSE)
            }
        }
    }
    pv <- gsub("[\r\n\t]+", " ", out$preview)
    long <- nchar(pv, type = "chars", allowNA = TRUE) > PREVIEW_MAX
    long[is.na(long)] <- FALSE
    pv[long] <- paste0(substr(pv[long], 1L, PREVIEW_MAX - 1L), "\u2026")
    out$preview <- pv
    out$preview_truncated <- out$preview_truncated | long
    out
}

# R's JIT compiles a function on its second call; tens of ms for the big ones. Summarise a
# few small values twice before the first real listing so that this happens outside the
# per-object time budgets.
warm_up <- function() {
    state$warm <- TRUE
    samples <- list(data.frame(a = 1L, b = "x", f = factor("a"), d = Sys.Date()), 1:3,
                    c("a", "b"), factor("a"), Sys.Date(), Sys.time(), matrix(1:4, 2),
                    list(1, "a"), function(x) x, new.env(), NULL, y ~ x, c(a = 1))
    for (i in 1:2) for (x in samples) try(describe(x), silent = TRUE)
    try(fingerprints(samples, lobstr::obj_addrs(samples)), silent = TRUE)
    invisible(NULL)
}

describe_binding <- function(kind) {
    if (kind == "active")
        list(type = "active binding", kind = "other", preview = "<active binding>")
    else
        list(type = "promise", kind = "other", preview = "<promise>")
}

# Fingerprint: cheap, changes when the value changes. Address + type + class + length + dims;
# plus member count for environments, argument names for functions, and, for values the diff
# baseline does not keep alive (see keep_ref; their address could be reused once they are
# freed), a sample of 9 values of long atomic vectors and of a list's first long atomic
# elements (data frame columns), and the addresses of a list's first 32 elements.
fingerprint <- function(x, addr) {
    tp <- typeof(x)
    extra <- ""
    len <- if (tp == "environment") length(x) else unclass_len(x)
    if (tp == "list" && len > 0L) {
        els <- .subset(x, seq_len(min(len, 32L)))
        big <- which(vapply(els, function(e) is.atomic(e) && length(e) > REF_MAX_LEN, NA))
        extra <- paste(c(lobstr::obj_addrs(els),
                         vapply(els[big[seq_len(min(3L, length(big)))]], sample_values, "")),
                       collapse = ",")
    } else if (tp %in% names(ABBR) && len > REF_MAX_LEN) {
        extra <- sample_values(x)
    } else if (tp == "closure") {
        extra <- paste(names(formals(x)), collapse = ",")
    }
    d <- if (is.data.frame(x)) .row_names_info(x, 2L) else attr(x, "dim", exact = TRUE)
    paste(addr, tp, paste(class(x), collapse = "/"), len, paste(d, collapse = "x"), extra,
          sep = "|")
}

sample_values <- function(x) {
    v <- .subset(x, sample_positions(length(x), 9L))
    paste(if (is.character(v)) substr(v, 1L, 32L) else as.character(v), collapse = ",")
}

# Fingerprints of many values; plain short atomic vectors vectorised.
fingerprints <- function(vals, addrs) {
    n <- length(vals)
    fps <- character(n)
    if (!n) return(fps)
    tp <- vapply(vals, typeof, "", USE.NAMES = FALSE)
    plain <- vapply(vals, function(x) is.null(attributes(x)), NA, USE.NAMES = FALSE)
    fast <- plain & tp %in% names(ABBR)
    lens <- integer(n)
    lens[fast] <- lengths(vals[fast], use.names = FALSE)
    fast <- fast & lens <= REF_MAX_LEN
    if (any(fast))
        fps[fast] <- paste(addrs[fast], tp[fast], IMPLICIT_CLASS[tp[fast]], lens[fast], "", "",
                           sep = "|")
    for (i in which(!fast)) fps[i] <- fingerprint(vals[[i]], addrs[i])
    fps
}

# Values the diff baseline keeps alive, so that a new value cannot take their address:
# short atomic vectors and small lists of them. Nothing big is held (memory is freed as soon
# as the user drops a value), nor environments or functions (which hold whole environments).
# The address of a value. (Not lobstr::obj_addr(): it looks its argument up again from a
# captured expression and environment, which crashed R inside byte-compiled code.)
addr_of <- function(x) lobstr::obj_addrs(list(x))

keep_ref <- function(x) {
    if (is.atomic(x)) return(unclass_len(x) <= REF_MAX_LEN)
    if (typeof(x) != "list") return(FALSE)
    n <- unclass_len(x)
    n <= 64L && all(vapply(.subset(x, seq_len(n)), function(e) is.atomic(e) &&
                               length(e) <= REF_MAX_LEN, NA))
}

# Bindings of an environment: "value", "active" or "lazy" (an unforced promise; never forced).
binding_kinds <- function(env, nms) {
    kinds <- rep.int("value", length(nms))
    if (!length(nms)) return(kinds)
    act <- vapply(nms, function(n) bindingIsActive(n, env), NA, USE.NAMES = FALSE)
    kinds[act] <- "active"
    rest <- which(!act)
    if (length(rest)) {
        lazy <- tryCatch(unname(rlang::env_binding_are_lazy(env, nms[rest])),
                         error = function(e) logical(length(rest)))
        kinds[rest[lazy]] <- "lazy"
    }
    kinds
}

# Fingerprints (and values) of all bindings `nms` of `env`.
snapshot <- function(env, nms) {
    kinds <- binding_kinds(env, nms)
    fps <- character(length(nms))
    fps[kinds == "active"] <- "active"
    fps[kinds == "lazy"] <- "lazy"
    vi <- which(kinds == "value")
    vals <- vector("list", length(nms))
    if (length(vi)) {
        v <- mget(nms[vi], envir = env, inherits = FALSE)
        fps[vi] <- fingerprints(v, lobstr::obj_addrs(v))
        vals[vi] <- v
    }
    names(fps) <- nms
    list(names = nms, kinds = kinds, fps = fps, vals = vals)
}

# JSON for Var records: names, keys (strings or integers), summary columns, fingerprints.
vars_json <- function(names, keys, cols, fps) {
    n <- length(names)
    if (!n) return(verbatim("[]"))
    num_tok <- function(v) ifelse(is.na(v), "null", sprintf("%.0f", v))
    key_tok <- if (is.character(keys)) json_str(keys) else json_int(as.integer(keys))
    dims_tok <- vapply(cols$dims, function(d) if (is.null(d)) "null"
                       else json_array(sprintf("%.0f", d)), "")
    recs <- paste0(
        "{\"name\":", json_str(names),
        ",\"key\":", key_tok,
        ",\"type\":", json_str(cols$type),
        ",\"kind\":", json_str(cols$kind),
        ",\"size\":", num_tok(cols$size),
        ",\"size_estimated\":", json_bool(cols$size_estimated),
        ",\"length\":", num_tok(cols$length),
        ",\"dims\":", dims_tok,
        ",\"preview\":", json_str(cols$preview),
        ",\"preview_truncated\":", json_bool(cols$preview_truncated),
        ",\"tabular\":", json_bool(cols$tabular),
        ",\"has_children\":", json_bool(cols$has_children),
        ",\"fingerprint\":", json_str(fps), "}")
    verbatim(json_array(recs))
}

describe_snapshot <- function(snap, idx) describe_values(snap$vals[idx], snap$kinds[idx])

# ----------------------------------------------------------------------------------------
# environment methods

global_names <- function(hidden) {
    sort(ls(globalenv(), all.names = hidden, sorted = FALSE), method = "radix")
}

is_hidden <- function(nms) if (is.null(nms)) logical() else startsWith(nms, ".")

# Update the baseline for the names in scope (hidden or not); others keep their entries.
set_baseline <- function(snap, hidden) {
    fp <- state$base_fp
    refs <- state$base_refs
    scope <- if (hidden) rep(TRUE, length(fp)) else !is_hidden(names(fp))
    fp <- fp[!scope]
    refs <- refs[intersect(names(refs), names(fp))]
    keep <- vapply(snap$vals, keep_ref, NA)
    fp[snap$names] <- snap$fps
    newrefs <- snap$vals[keep]
    names(newrefs) <- snap$names[keep]
    refs[names(newrefs)] <- newrefs
    state$base_fp <- fp
    state$base_refs <- refs
}

# Views opened by name whose variable was reassigned or removed.
release_views <- function() {
    released <- character()
    ge <- globalenv()
    for (id in ls(state$views, sorted = FALSE)) {
        v <- state$views[[id]]
        if (!isTRUE(v$by_name)) next
        gone <- !exists(v$source, envir = ge, inherits = FALSE) ||
            bindingIsActive(v$source, ge)
        if (!gone) {
            kind <- binding_kinds(ge, v$source)
            gone <- kind != "value" ||
                !identical(fingerprint(get(v$source, envir = ge),
                                       addr_of(get(v$source, envir = ge))), v$fp)
        }
        if (gone) {
            rm(list = id, envir = state$views)
            released <- c(released, id)
        }
    }
    sort(released, method = "radix")
}

m_env_list <- function(args) {
    hidden <- arg_flag(args, "hidden")
    nms <- global_names(hidden)
    snap <- snapshot(globalenv(), nms)
    old <- state$base_fp
    old <- if (hidden) old else old[!is_hidden(names(old))]
    same <- length(old) == length(snap$fps) && all(names(snap$fps) %in% names(old)) &&
        all(old[names(snap$fps)] == snap$fps)
    if (!same || state$version == 0L) state$version <- state$version + 1L
    descs <- describe_snapshot(snap, seq_along(nms))
    set_baseline(snap, hidden)
    list(version = state$version, variables = vars_json(nms, nms, descs, snap$fps))
}

m_env_diff <- function(args) {
    hidden <- arg_flag(args, "hidden")
    nms <- global_names(hidden)
    snap <- snapshot(globalenv(), nms)
    old <- state$base_fp
    if (!hidden) old <- old[!is_hidden(names(old))]
    prev <- old[nms]
    changed <- which(is.na(prev) | prev != snap$fps)
    removed <- sort(setdiff(names(old), nms), method = "radix")
    released <- release_views()
    if (length(changed) || length(removed)) state$version <- state$version + 1L
    descs <- describe_snapshot(snap, changed)
    set_baseline(snap, hidden)
    list(version = state$version,
         assigned = vars_json(nms[changed], nms[changed], descs, snap$fps[changed]),
         removed = as.list(removed), released_views = as.list(released))
}

# The value at `path` (a variable name, then children keys).
resolve_path <- function(path) {
    if (!length(path) || !is.character(path[[1L]]) || length(path[[1L]]) != 1L)
        fail("invalid_argument", "'path' must start with a variable name.")
    ge <- globalenv()
    nm <- path[[1L]]
    if (!exists(nm, envir = ge, inherits = FALSE))
        fail("not_found", sprintf("No variable named '%s'.", nm))
    x <- child_value(ge, nm, nm)
    shown <- nm
    for (k in path[-1L]) {
        x <- child_of(x, k, shown)
        shown <- paste0(shown, "/", k)
    }
    x
}

child_value <- function(env, nm, shown) {
    if (bindingIsActive(nm, env) || binding_kinds(env, nm) != "value")
        fail("not_found", sprintf("'%s' is not evaluated (active binding or promise).", shown))
    get(nm, envir = env, inherits = FALSE)
}

child_of <- function(x, k, shown) {
    nf <- function() fail("not_found", sprintf("'%s' has no element '%s'.", shown,
                                              paste(k, collapse = "")))
    if (length(k) != 1L) nf()
    if (is.environment(x)) {
        if (!is.character(k) || !exists(k, envir = x, inherits = FALSE)) nf()
        return(child_value(x, k, paste0(shown, "/", k)))
    }
    if (typeof(x) == "S4") {
        if (!is.character(k) || !k %in% methods::slotNames(x)) nf()
        return(methods::slot(x, k))
    }
    if (typeof(x) %in% c("list", "expression") && !inherits(x, "POSIXlt")) {
        n <- unclass_len(x)
        if (is.numeric(k)) {
            if (is.na(k) || k < 1 || k > n) nf()
            return(.subset2(x, as.integer(k)))
        }
        if (is.character(k)) {
            i <- match(k, names(x))
            if (is.na(i)) nf()
            return(.subset2(x, i))
        }
    }
    nf()
}

m_env_children <- function(args) {
    path <- args$path
    if (!is.list(path)) path <- as.list(path)
    x <- resolve_path(path)
    offset <- arg_int(args, "offset", 0L)
    limit <- arg_int(args, "limit", CHILDREN_LIMIT, min = 0L, max = 10000L)
    tp <- typeof(x)
    if (tp == "environment") {
        nms <- sort(ls(x, all.names = TRUE, sorted = FALSE), method = "radix")
        total <- length(nms)
        sel <- if (offset < total) seq.int(offset + 1L, min(total, offset + limit)) else integer()
        snap <- snapshot(x, nms[sel])
        descs <- describe_snapshot(snap, seq_along(sel))
        return(list(total = total, offset = offset,
                    children = vars_json(nms[sel], nms[sel], descs, snap$fps)))
    }
    if (tp == "S4") {
        nms <- methods::slotNames(x)
        total <- length(nms)
        sel <- if (offset < total) seq.int(offset + 1L, min(total, offset + limit)) else integer()
        vals <- lapply(nms[sel], function(s) methods::slot(x, s))
        return(children_json(total, offset, paste0("@", nms[sel]), nms[sel], vals))
    }
    if (tp %in% c("list", "expression") && !inherits(x, "POSIXlt")) {
        total <- unclass_len(x)
        sel <- if (offset < total) seq.int(offset + 1L, min(total, offset + limit)) else integer()
        nm <- names(x)
        shown <- if (is.null(nm)) paste0("[[", sel, "]]") else {
            s <- nm[sel]
            ifelse(is.na(s) | s == "", paste0("[[", sel, "]]"), paste0("$", s))
        }
        vals <- lapply(sel, function(i) .subset2(x, i))
        return(children_json(total, offset, shown, sel, vals))
    }
    list(total = 0L, offset = offset, children = verbatim("[]"))
}

children_json <- function(total, offset, shown, keys, vals) {
    addrs <- if (length(vals)) lobstr::obj_addrs(vals) else character()
    fps <- fingerprints(vals, addrs)
    descs <- describe_values(vals)
    list(total = total, offset = offset, children = vars_json(shown, keys, descs, fps))
}

m_env_delete <- function(args) {
    nms <- unlist(args$names)
    if (!is.character(nms) && !is.null(nms))
        fail("invalid_argument", "'names' must be a list of variable names.")
    nms <- unique(as.character(nms))
    ge <- globalenv()
    missing <- nms[!vapply(nms, exists, NA, envir = ge, inherits = FALSE)]
    if (length(missing))
        fail("not_found", if (length(missing) == 1L)
            sprintf("No variable named '%s'.", missing)
            else sprintf("No variables named %s.", paste0("'", missing, "'", collapse = ", ")))
    rm(list = nms, envir = ge)
    list(removed = as.list(nms))
}

m_env_clear <- function(args) {
    hidden <- arg_flag(args, "hidden")
    # .Random.seed is the RNG state, not a variable: it stays (the contract keeps the seed).
    nms <- setdiff(global_names(hidden), ".Random.seed")
    rm(list = nms, envir = globalenv())
    list(removed = as.list(nms))
}

# ----------------------------------------------------------------------------------------
# data viewer: viewer.R and viewer_engine.R, next to this file, loaded into the same
# environment as load.R says (the loaders load this file only, with sys.source() or, its
# byte code, compiler::loadcmp(): its own path is their `file`)

(function(target) {
    here <- NULL
    for (i in rev(seq_len(sys.nframe()))) {
        fn <- sys.function(i)
        if (identical(fn, base::sys.source) || identical(fn, compiler::loadcmp)) {
            here <- get("file", envir = sys.frame(i), inherits = FALSE)
            break
        }
    }
    if (is.null(here)) stop("rsparkhub.R must be loaded with sys.source() or compiler::loadcmp()")
    dir <- dirname(here)
    if (basename(dir) == "compiled") dir <- dirname(dir)
    load <- eval(parse(file.path(dir, "load.R"), keep.source = FALSE)[[1]])
    for (f in c("viewer.R", "viewer_engine.R")) load(file.path(dir, f), target)
})(environment())

# ----------------------------------------------------------------------------------------
# help

# The help files for `topic`: in `package` if given and found there, else as help() finds
# them in the loaded namespaces, else in any installed package (searched in .libPaths() now,
# so packages installed after the kernel started are found). Several files when the topic
# is an alias in several packages (R 4.2's `plot`: base::plot and graphics::plot.default).
find_help_files <- function(topic, package) {
    h <- function(pkgs) tryCatch(
        unique(as.character(do.call(utils::help, list(topic = topic, package = pkgs,
                                                      try.all.packages = FALSE,
                                                      help_type = "text")))),
        error = function(e) character())
    f <- character()
    if (!is.null(package)) f <- h(package)[1L]
    if (!length(f) || is.na(f)) f <- h(NULL)
    if (!length(f)) f <- h(.packages(all.available = TRUE))
    f
}

help_file_package <- function(file) basename(dirname(dirname(file)))

# The parsed Rd of one help file (R caches the contents of .rdb files it has read; a package
# reinstalled since would be read through the stale cache, so the cache is flushed first).
read_help_file <- function(file, topic) {
    pkg <- help_file_package(file)
    rdb <- file.path(dirname(file), pkg)
    try(.Internal(lazyLoadDBflush(paste0(rdb, ".rdb"))), silent = TRUE)
    tryCatch(utils:::.getHelpFile(file), error = function(e)
        fail("help_not_found", sprintf("The help for '%s' in package '%s' cannot be read: %s",
                                       topic, pkg, conditionMessage(e))))
}

rd_title <- function(rd)
    tryCatch(paste(tools:::.Rd_get_title(rd), collapse = " "), error = function(e) "")

help_href <- function(url) {
    if (grepl("^https?://", url, ignore.case = TRUE)) return(url)
    if (startsWith(url, "#")) return(url)
    pattern <- "^(?:\\.\\./)+([^/]+)/(?:help|html)/([^#?]+?)(?:\\.html)?(?:#.*)?$"
    m <- regmatches(url, regexec(pattern, url, perl = TRUE))[[1L]]
    if (length(m) == 3L && nzchar(m[2L]) && nzchar(m[3L]) && !m[2L] %in% c("doc", "library")) {
        topic <- utils::URLdecode(m[3L])
        return(paste0("rsparkhub-help:r/", utils::URLencode(m[2L], reserved = TRUE), "/",
                      utils::URLencode(topic, reserved = TRUE)))
    }
    NULL
}

# One start tag: no event handlers; href/src rewritten (help_href) or dropped.
clean_tag <- function(tag) {
    tag <- gsub("(?i)\\s+on[a-z]+\\s*=\\s*(\"[^\"]*\"|'[^']*'|[^\\s>]+)", "", tag, perl = TRUE)
    m <- gregexpr("(?i)\\s(href|src)\\s*=\\s*(\"[^\"]*\"|'[^']*')", tag, perl = TRUE)
    found <- regmatches(tag, m)[[1L]]
    if (!length(found)) return(tag)
    repl <- vapply(found, function(a) {
        attr_name <- tolower(sub("(?i)^\\s*(href|src).*$", "\\1", a, perl = TRUE))
        url <- sub("^[^=]*=\\s*['\"](.*)['\"]$", "\\1", a)
        url <- gsub("&amp;", "&", url, fixed = TRUE)
        new <- if (attr_name == "href") help_href(url) else
            if (grepl("^https?://", url, ignore.case = TRUE)) url else NULL
        if (is.null(new)) "" else
            paste0(" ", attr_name, "=\"",
                   gsub("\"", "&quot;", gsub("&", "&amp;", new, fixed = TRUE), fixed = TRUE), "\"")
    }, "", USE.NAMES = FALSE)
    regmatches(tag, m) <- list(repl)
    tag
}

clean_help_html <- function(html) {
    body <- sub("(?s)^.*?<body[^>]*>", "", html, perl = TRUE)
    body <- sub("(?s)</body>.*$", "", body, perl = TRUE)
    body <- gsub("(?is)<script\\b.*?</script\\s*>", "", body, perl = TRUE)
    body <- gsub("(?is)<style\\b.*?</style\\s*>", "", body, perl = TRUE)
    body <- gsub("(?i)<(link|meta|script|base)\\b[^>]*>", "", body, perl = TRUE)
    body <- gsub("(?is)<p>\\s*<a href=['\"]\\.\\./Example/[^'\"]*['\"]>[^<]*</a>\\s*</p>", "",
                 body, perl = TRUE)
    m <- gregexpr("<[a-zA-Z][^>]*>", body, perl = TRUE)
    tags <- regmatches(body, m)[[1L]]
    if (length(tags)) regmatches(body, m) <- list(vapply(tags, clean_tag, "", USE.NAMES = FALSE))
    trimws(body)
}

# One page, or — when the topic names pages in several packages and no package was asked
# for — the list of them to choose from (`matches`, no `html`), as R's HTML help does.
m_help_html <- function(args) {
    topic <- arg_str(args, "topic")
    package <- args$package
    if (!is.null(package) && (!is.character(package) || length(package) != 1L || !nzchar(package)))
        package <- NULL
    files <- find_help_files(topic, package)
    if (!length(files)) fail("help_not_found",
                             sprintf("No help for '%s' in any installed package.", topic))
    if (length(files) > 1L) {
        matches <- lapply(files, function(file) {
            rd <- tryCatch(read_help_file(file, topic), error = function(e) NULL)
            list(topic = topic, package = help_file_package(file), page = basename(file),
                 title = if (is.null(rd)) "" else rd_title(rd))
        })
        return(list(topic = topic, matches = matches))
    }
    file <- files[1L]
    pkg <- help_file_package(file)
    rd <- read_help_file(file, topic)
    title <- rd_title(rd)
    tmp <- tempfile(fileext = ".html")
    on.exit(unlink(tmp))
    # \Sexpr[stage=render] is R code of the package, run while rendering: not on behalf of
    # a workspace viewer (may_run_code false), who sees the macro's source instead
    stages <- if (isTRUE(args$may_run_code)) "render" else character()
    tools::Rd2HTML(rd, out = tmp, package = pkg, dynamic = TRUE, stages = stages)
    html <- paste(readLines(tmp, encoding = "UTF-8", warn = FALSE), collapse = "\n")
    list(topic = topic, package = pkg, title = title, html = clean_help_html(html))
}

m_help_search <- function(args) {
    query <- arg_str(args, "query")
    limit <- arg_int(args, "limit", 50L, min = 0L, max = 1000L)
    words <- unique(lower(strsplit(trimws(query), "\\s+")[[1L]]))
    words <- words[nzchar(words)]
    if (!length(words)) return(list(query = query, results = verbatim("[]")))
    db <- utils::hsearch_db()
    base <- db$Base
    keep <- base$Type == "help"
    base <- base[keep, , drop = FALSE]
    ids <- base$ID
    n <- length(ids)
    # per-field, per-word hits
    field_hits <- function(table, col) {
        vals <- lower(table[[col]])
        lapply(words, function(w) {
            hit <- unique(table$ID[grepl(w, vals, fixed = TRUE)])
            ids %in% hit
        })
    }
    f_topic <- lapply(words, function(w) grepl(w, lower(base$Topic), fixed = TRUE) |
                          grepl(w, lower(base$Name), fixed = TRUE))
    f_alias <- field_hits(db$Aliases, "Alias")
    f_title <- lapply(words, function(w) grepl(w, lower(base$Title), fixed = TRUE))
    f_concept <- field_hits(db$Concepts, "Concept")
    f_keyword <- field_hits(db$Keywords, "Keyword")
    all_words <- rep(TRUE, n)
    for (i in seq_along(words))
        all_words <- all_words & (f_topic[[i]] | f_alias[[i]] | f_title[[i]] | f_concept[[i]] |
                                  f_keyword[[i]])
    hits <- which(all_words)
    if (!length(hits)) return(list(query = query, results = verbatim("[]")))
    q <- lower(trimws(query))
    al <- db$Aliases
    exact_ids <- unique(al$ID[lower(al$Alias) == q])
    exact <- ids %in% exact_ids | lower(base$Topic) == q
    count <- function(fl) Reduce(`+`, lapply(fl, as.integer))
    nw <- length(words)
    topic_all <- Reduce(`&`, Map(`|`, f_topic, f_alias))
    title_all <- Reduce(`&`, f_title)
    # a title made of the query's words is better than a long one that contains them
    title_words <- lengths(strsplit(trimws(base$Title), "[^[:alnum:]]+"))
    tight <- pmin(1, nw / pmax(1L, title_words))
    # concepts and keywords count only for words the topic, aliases and title do not have
    fallback <- lapply(seq_len(nw), function(i) !(f_topic[[i]] | f_alias[[i]] | f_title[[i]]))
    score <- 100 * exact + 20 * topic_all + title_all * (10 + 6 * tight) +
        2 * count(f_topic) + 2 * count(f_alias) + 1 * count(f_title) +
        0.5 * count(Map(`&`, f_concept, fallback)) + 0.25 * count(Map(`&`, f_keyword, fallback))
    score <- round(score, 3)
    hits <- hits[order(-score[hits], base$Topic[hits], base$Package[hits], method = "radix")]
    hits <- hits[seq_len(min(limit, length(hits)))]
    any_of <- function(fl) Reduce(`|`, fl)
    m_topic <- any_of(f_topic); m_alias <- any_of(f_alias); m_title <- any_of(f_title)
    m_concept <- any_of(f_concept); m_keyword <- any_of(f_keyword)
    # the topic to open: the alias equal to the query if any, else the entry's topic
    res <- lapply(hits, function(i) {
        topic <- base$Topic[i]
        if (exact[i]) {
            a <- al$Alias[al$ID == ids[i] & lower(al$Alias) == q]
            if (length(a)) topic <- a[1L]
        }
        matched <- c("topic", "alias", "title", "concept", "keyword")[
            c(m_topic[i], m_alias[i], m_title[i], m_concept[i], m_keyword[i])]
        list(topic = topic, package = base$Package[i], title = base$Title[i],
             matched = as.list(matched), score = score[i])
    })
    list(query = query, results = res)
}

# ----------------------------------------------------------------------------------------
# plots

store_plot <- function(plot) {
    state$plot_seq <- state$plot_seq + 1L
    key <- paste0("p", state$plot_seq)
    plots <- state$plots
    plots[[key]] <- plot
    if (length(plots) > MAX_PLOTS) plots <- plots[seq.int(length(plots) - MAX_PLOTS + 1L,
                                                           length(plots))]
    state$plots <- plots
    key
}

m_plot_render <- function(args) {
    key <- arg_str(args, "key")
    plot <- state$plots[[key]]
    if (is.null(plot))
        fail("plot_not_found",
             sprintf("No plot '%s' (only the last %d plots are kept).", key, MAX_PLOTS))
    fmt <- arg_str(args, "format", required = FALSE) %||% "png"
    width <- arg_int(args, "width", 800L, min = 16L, max = 20000L)
    height <- arg_int(args, "height", 600L, min = 16L, max = 20000L)
    res <- arg_int(args, "res", 96L, min = 18L, max = 1200L)
    out <- arg_str(args, "out")
    mime <- switch(fmt, png = "image/png", svg = "image/svg+xml", pdf = "application/pdf",
                   fail("invalid_argument",
                        sprintf("Unknown plot format '%s' (png, svg, pdf).", fmt)))
    old <- grDevices::dev.cur()
    switch(fmt,
        png = grDevices::png(out, width = width, height = height, res = res, units = "px"),
        svg = grDevices::svg(out, width = width / 72, height = height / 72),
        pdf = grDevices::pdf(out, width = width / res, height = height / res))
    dev <- grDevices::dev.cur()
    ok <- FALSE
    on.exit({
        if (dev %in% grDevices::dev.list()) grDevices::dev.off(dev)
        if (old > 1L && old %in% grDevices::dev.list()) grDevices::dev.set(old)
        if (!ok) unlink(out)
    })
    tryCatch(grDevices::replayPlot(plot), error = function(e)
        fail("plot_failed", sprintf("The plot could not be redrawn: %s", conditionMessage(e))))
    ok <- TRUE
    list(path = out, mime = mime)
}

# ----------------------------------------------------------------------------------------
# workspace image (R only)

# Objects whose serialisation holds an external pointer (a connection, a database handle,
# an Rcpp object...): saved anyway, but they will not work after loading. data.table's
# .internal.selfref is an external pointer to R_NilValue whose 'prot' is a pointer to the
# table itself; data.table re-creates it on load, so that pair does not count.
NIL_ADDR <- NULL
nil_addr <- function() {
    if (is.null(NIL_ADDR)) NIL_ADDR <<- norm_addr(addr_of(NULL))
    NIL_ADDR
}

norm_addr <- function(s) sub("^0+", "", tolower(sub("^0x", "", s)))

ptr_addr <- function(p) {
    s <- utils::capture.output(print(p))
    norm_addr(sub("^<pointer: *(\\(nil\\)|0x)?([0-9a-fA-F]*)>.*$", "\\2", s[1L]))
}

# Cheap pre-check: can x hold an external pointer at all?
may_hold_pointer <- function(x, depth = 0L) {
    tp <- typeof(x)
    if (tp %in% c("logical", "integer", "double", "complex", "character", "raw", "NULL",
                  "symbol")) {
        a <- attributes(x)
        if (is.null(a)) return(FALSE)
        a[[".internal.selfref"]] <- NULL
        return(any(vapply(a, function(v) may_hold_pointer(v, depth + 1L), NA)))
    }
    if (tp == "list" && depth < 2L && unclass_len(x) <= 10000L) {
        if (any(vapply(.subset(x, seq_len(unclass_len(x))),
                       function(v) may_hold_pointer(v, depth + 1L), NA))) return(TRUE)
        a <- attributes(x)
        a[[".internal.selfref"]] <- NULL
        a$row.names <- NULL
        return(any(vapply(a, function(v) may_hold_pointer(v, depth + 1L), NA)))
    }
    TRUE
}

holds_pointer <- function(x) {
    if (!may_hold_pointer(x)) return(FALSE)
    found <- FALSE
    skip_next <- FALSE
    hook <- function(r) {
        if (typeof(r) == "externalptr") {
            if (skip_next) {
                skip_next <<- FALSE
            } else if (identical(ptr_addr(r), nil_addr())) {
                skip_next <<- TRUE
            } else {
                found <<- TRUE
            }
        } else {
            skip_next <<- FALSE
        }
        NULL
    }
    con <- file(nullfile(), open = "wb")
    on.exit(close(con))
    tryCatch(serialize(x, con, refhook = hook), error = function(e) found <<- TRUE)
    found
}

m_image_save <- function(args) {
    path <- arg_str(args, "path")
    ge <- globalenv()
    # Like save.image(): every binding, hidden ones and .Random.seed included, so that
    # loading the image restores the session as R's own workspace images do.
    nms <- sort(ls(ge, all.names = TRUE, sorted = FALSE), method = "radix")
    kinds <- binding_kinds(ge, nms)
    bad <- character()
    for (i in seq_along(nms)) {
        if (kinds[i] != "value") next
        if (holds_pointer(get(nms[i], envir = ge, inherits = FALSE))) bad <- c(bad, nms[i])
    }
    tmp <- paste0(path, ".tmp")
    tryCatch(save(list = nms, envir = ge, file = tmp), error = function(e) {
        unlink(tmp)
        fail("io_error", sprintf("The workspace could not be saved to %s: %s", path,
                                 conditionMessage(e)))
    })
    if (!file.rename(tmp, path)) {
        unlink(tmp)
        fail("io_error", sprintf("The workspace could not be saved to %s.", path))
    }
    list(saved = as.list(nms), unsaveable = as.list(bad))
}

m_image_load <- function(args) {
    path <- arg_str(args, "path")
    if (!file.exists(path)) fail("not_found", sprintf("No file %s.", path))
    loaded <- tryCatch(load(path, envir = globalenv()), error = function(e)
        fail("io_error", sprintf("%s is not a readable R workspace image: %s", path,
                                 conditionMessage(e))))
    out <- list(loaded = as.list(sort(loaded, method = "radix")))
    if (".Random.seed" %in% loaded) attr(out, "keep_seed") <- TRUE
    out
}

METHODS <- list(
    env_list = m_env_list, env_diff = m_env_diff, env_children = m_env_children,
    env_delete = m_env_delete, env_clear = m_env_clear,
    view_open = m_view_open, view_rows = m_view_rows, view_close = m_view_close,
    help_html = m_help_html,
    # with where the agent's full-text index looks (agent/helpindex.py) and what is attached
    help_search = function(args) c(m_help_search(args), list(
        roots = as.list(.libPaths()),
        attached = as.list(sub("^package:", "", grep("^package:", search(), value = TRUE))))),
    plot_render = m_plot_render, image_save = m_image_save, image_load = m_image_load)

# ----------------------------------------------------------------------------------------
# kernel hooks (IRkernel only)

# Display mimetype value for help objects; NULL (key dropped) for anything else.
help_repr <- function(obj, ...) {
    tryCatch({
        if (inherits(obj, "help_files_with_topic")) {
            files <- as.character(obj)
            if (!length(files)) return(NULL)
            # several packages: no package, so that the Help pane offers the choice
            pkgs <- unique(help_file_package(files))
            out <- list(topic = as.character(attr(obj, "topic"))[1L], language = "r")
            if (length(pkgs) == 1L) out$package <- pkgs
            out
        } else if (inherits(obj, "hsearch")) {
            list(query = paste(obj$pattern, collapse = " "), language = "r", kind = "search")
        } else NULL
    }, error = function(e) NULL)
}

# Plot mimetype value: keeps the recorded plot for plot_render.
plot_repr <- function(obj, ...) {
    tryCatch(list(key = store_plot(obj)), error = function(e) NULL)
}

# text/plain for `??words`: the listing print.hsearch would show in a pager, as text (so that
# IRkernel pages the bundle, with the help mimetype, instead of an empty one).
hsearch_text <- function(obj, ...) {
    old <- options(help_type = "text", pager = function(files, header, title, delete.file) {
        for (f in files) cat(readLines(f, warn = FALSE), sep = "\n")
        if (isTRUE(delete.file)) unlink(files)
    })
    on.exit(options(old))
    paste(utils::capture.output(print(obj)), collapse = "\n")
}

set_binding <- function(env, name, value) {
    locked <- bindingIsLocked(name, env)
    if (locked) unlockBinding(name, env)
    assign(name, value, envir = env)
    if (locked) lockBinding(name, env)
}

install_hooks <- function() {
    if (!isNamespaceLoaded("IRkernel") || !isNamespaceLoaded("repr")) return(invisible(FALSE))
    add_opt <- function(name, value) {
        cur <- getOption(name)
        if (!value %in% cur) options(structure(list(c(cur, value)), names = name))
    }
    add_opt("jupyter.plot_mimetypes", PLOT_MIME)
    add_opt("jupyter.display_mimetypes", HELP_MIME)
    add_opt("jupyter.pager_classes", "hsearch")
    repr_ns <- asNamespace("repr")
    m2r <- get("mime2repr", envir = repr_ns)
    m2r[[HELP_MIME]] <- help_repr
    m2r[[PLOT_MIME]] <- plot_repr
    envs <- list(repr_ns, parent.env(asNamespace("IRkernel")))
    if (isNamespaceLoaded("IRdisplay")) envs <- c(envs, list(parent.env(asNamespace("IRdisplay"))))
    if ("package:repr" %in% search()) envs <- c(envs, list(as.environment("package:repr")))
    for (env in envs) {
        if (exists("mime2repr", envir = env, inherits = FALSE))
            set_binding(env, "mime2repr", m2r)
    }
    registerS3method("repr_text", "hsearch", hsearch_text, envir = repr_ns)
    invisible(TRUE)
}

try(install_hooks(), silent = TRUE)

