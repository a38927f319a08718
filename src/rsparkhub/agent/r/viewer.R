# The data viewer's kernel side (view_open / view_rows / view_close of
# docs/introspection-contract.md): column kinds, filters, search, sorts and pages of cells.
# loaded by rsparkhub.R (as load.R says) into the same environment (the helpers it uses — fail,
# json_*, arg_*, state, … — are defined there). Views keep a reference to the user's value
# and one row index; the value is never modified (no setkey, no in-place sort).
#
# Engine: base R's radix order() (data.table's forder, contributed to R) for sorts;
# data.table (when installed) for between() and chmatch(); searches that do not format every
# value: integers on digit windows, columns with a small range (dates, integers, decimals
# with few places) through a table of their range, text on its distinct values.


# Column kinds: num (plain numbers), lgl, chr, fct, date, time, other.
col_kind <- function(col) {
    if (is.factor(col)) return("fct")
    if (inherits(col, "Date")) return("date")
    if (inherits(col, c("POSIXct", "POSIXlt"))) return("time")
    if (!is.null(dim(col))) return("other")
    tp <- typeof(col)
    if (tp %in% c("integer", "double") &&
        (!is.object(col) || identical(class(col), "numeric") ||
         identical(class(col), "integer") || inherits(col, "integer64")))
        return("num")
    if (tp == "logical" && !is.object(col)) return("lgl")
    if (tp == "character" && !is.object(col)) return("chr")
    "other"
}

make_view <- function(x, source, by_name, fp) {
    v <- new.env(parent = emptyenv())
    v$x <- x
    v$source <- source
    v$by_name <- by_name
    v$fp <- fp
    if (is.data.frame(x)) {
        v$is_df <- TRUE
        v$nrow <- .row_names_info(x, 2L)
        v$ncol <- unclass_len(x)
        nm <- names(x) %||% character(v$ncol)
        types <- vapply(seq_len(v$ncol), function(j) class(.subset2(x, j))[1L], "")
        kinds <- vapply(seq_len(v$ncol), function(j) col_kind(.subset2(x, j)), "")
    } else {
        v$is_df <- FALSE
        d <- dim(x)
        v$nrow <- d[1L]
        v$ncol <- d[2L]
        nm <- colnames(x) %||% character(v$ncol)
        tp <- typeof(x)
        ty <- switch(tp, double = "numeric", tp)
        types <- rep.int(ty, v$ncol)
        kinds <- rep.int(if (tp %in% c("integer", "double")) "num" else
                         if (tp == "logical") "lgl" else if (tp == "character") "chr" else
                             "other", v$ncol)
    }
    nm[is.na(nm) | nm == ""] <- paste0("V", seq_len(v$ncol))[is.na(nm) | nm == ""]
    v$names <- nm
    v$types <- types
    v$kinds <- kinds
    v$key <- NULL
    v$idx <- NULL
    v
}

is_tabular <- function(x) {
    is.data.frame(x) ||
        (is.atomic(x) && length(dim(x)) == 2L) ||
        (is.list(x) && !is.object(x) && length(dim(x)) == 2L)
}

m_view_open <- function(args) {
    ge <- globalenv()
    if (!is.null(args$name)) {
        nm <- arg_str(args, "name")
        if (!exists(nm, envir = ge, inherits = FALSE))
            fail("not_found", sprintf("No variable named '%s'.", nm))
        x <- child_value(ge, nm, nm)
        source <- nm
        by_name <- TRUE
        fp <- fingerprint(x, addr_of(x))
    } else if (!is.null(args$expr)) {
        src <- arg_str(args, "expr")
        exprs <- tryCatch(parse(text = src, keep.source = FALSE),
                          error = function(e) fail("invalid_expression", conditionMessage(e)))
        env <- new.env(parent = ge)
        x <- NULL
        for (e in exprs) {
            x <- tryCatch(eval(e, env), error = function(err)
                fail("invalid_expression", conditionMessage(err)))
        }
        source <- src
        by_name <- FALSE
        fp <- NULL
    } else {
        fail("invalid_argument", "Give a variable 'name' or an 'expr'.")
    }
    if (!is_tabular(x))
        fail("not_tabular", sprintf(
            "'%s' is a %s, not a table; only data frames and matrices can be viewed.",
            source, class(x)[1L]))
    v <- make_view(x, source, by_name, fp)
    state$view_seq <- state$view_seq + 1L
    id <- paste0("v", state$view_seq)
    assign(id, v, envir = state$views)
    cols <- lapply(seq_len(v$ncol), function(j)
        list(name = v$names[j], type = v$types[j], index = j - 1L))
    list(view_id = id, source = source, nrow = v$nrow, ncol = v$ncol, columns = cols)
}

get_view <- function(id) {
    if (!is.character(id) || length(id) != 1L || !exists(id, envir = state$views, inherits = FALSE))
        fail("view_not_found", sprintf("No open view '%s'; it was closed or its variable changed.",
                                       paste(id, collapse = "")))
    get(id, envir = state$views, inherits = FALSE)
}

# Column j, all rows (rows = NULL) or rows `rows`.
view_col <- function(v, j, rows = NULL) {
    x <- v$x
    if (v$is_df) {
        col <- .subset2(x, j)
        if (!is.null(rows)) {
            col <- if (length(dim(col)) == 2L) col[rows, , drop = FALSE] else col[rows]
        }
        if (inherits(col, "POSIXlt")) col <- as.POSIXct(col)
        col
    } else {
        if (is.null(rows)) x[, j, drop = TRUE] else x[rows, j, drop = TRUE]
    }
}

col_index <- function(v, name) {
    if (is.numeric(name) && length(name) == 1L && !is.na(name) && name >= 0 && name < v$ncol)
        return(as.integer(name) + 1L)
    j <- if (is.character(name) && length(name) == 1L) match(name, v$names) else NA
    if (is.na(j))
        fail("unknown_column", sprintf("No column named '%s' in %s.",
                                       paste(name, collapse = ""), v$source))
    j
}

# Text of cells, as shown (NA -> NA).
cell_text <- function(col, kind) {
    out <- switch(kind,
        num = num_text(col),
        lgl = as.character(col),
        chr = col,
        fct = as.character(col),
        date = format(col, "%Y-%m-%d"),
        time = iso_time(col),
        other = other_text(col))
    out[is.na(col_na(col))] <- NA_character_
    out
}

# Text of numbers: whole doubles as integers ("100000", not "1e+05"; and converting integers
# is several times faster), others with 15 significant digits.
num_text <- function(col) {
    if (is.double(col) && !is.object(col)) {
        fin <- is.finite(col)
        if (all(!fin | (col == trunc(col) & abs(col) < 2^31))) {
            out <- as.character(as.integer(ifelse(fin, col, NA)))
            out[is.nan(col)] <- "NaN"
            out[col %in% Inf] <- "Inf"
            out[col %in% -Inf] <- "-Inf"
            return(out)
        }
        return(double_text(col))
    }
    as.character(col)
}

# as.character() of doubles, ~2x faster: C's "%.15g" is the same text for non-whole values
# with 1e-3 <= |x| < 1e15 except where R keeps fewer digits (its 15-digit text would end in
# 1 or 9 — the last digit within R's tolerance); those and all others go to as.character().
double_text <- function(x) {
    if (length(x) < 1000L) return(as.character(x))
    out <- sprintf("%.15g", x)
    ax <- abs(x)
    plain <- is.finite(x) & x != trunc(x) & ax >= 1e-3 & ax < 1e15
    redo <- !plain | endsWith(out, "1") | endsWith(out, "9")
    if (any(redo)) out[redo] <- as.character(x[redo])
    out
}

col_na <- function(col) {
    if (length(dim(col)) == 2L) return(rep(1, NROW(col)))
    if (is.list(col) && !is.object(col)) return(ifelse(vapply(col, is.null, NA), NA, 1))
    ifelse(is.na(col), NA, 1)
}

iso_time <- function(col) {
    tz <- attr(col, "tzone")[1L] %||% ""
    if (is.na(tz)) tz <- ""
    secs <- unclass(col)
    frac <- any(is.finite(secs) & secs != floor(secs))
    s <- format(col, if (frac) "%Y-%m-%dT%H:%M:%OS6" else "%Y-%m-%dT%H:%M:%S", tz = tz)
    if (frac) s <- sub("\\.?0+$", "", s)
    off <- format(col, "%z", tz = tz)
    off <- ifelse(nchar(off) == 5L, paste0(substr(off, 1L, 3L), ":", substr(off, 4L, 5L)), "")
    out <- paste0(s, off)
    out[is.na(col)] <- NA_character_
    out
}

other_text <- function(col) {
    if (length(dim(col)) == 2L) {
        m <- if (is.data.frame(col)) as.matrix(format(col)) else format(col)
        return(short_str(apply(m, 1L, paste, collapse = ", "), CELL_MAX))
    }
    if (is.list(col) && !is.object(col)) {
        return(vapply(col, function(e) {
            if (is.null(e)) return(NA_character_)
            if (is.atomic(e) && length(e) == 1L && is.null(attributes(e))) return(as.character(e))
            if (is.data.frame(e)) return(sprintf("<df [%d \u00d7 %d]>", .row_names_info(e, 2L),
                                                 length(e)))
            ab <- if (typeof(e) %in% names(ABBR)) ABBR[[typeof(e)]] else class(e)[1L]
            sprintf("<%s [%d]>", ab, length(e))
        }, "", USE.NAMES = FALSE))
    }
    out <- tryCatch(format(col, trim = TRUE, justify = "none"),
                    error = function(e) as.character(col))
    short_str(as.character(out), CELL_MAX)
}

# JSON tokens of the cells of one column slice.
cell_tokens <- function(col, kind) {
    switch(kind,
        num = if (is.integer(col) && !is.object(col)) json_int(col) else
              if (inherits(col, "integer64")) { s <- as.character(col); s[is.na(s)] <- "null"; s }
              else json_num(col),
        lgl = json_bool(col),
        chr = json_str(short_str(col, STRING_CELL_MAX)),
        json_str(cell_text(col, kind)))
}

parse_num <- function(val, what) {
    n <- suppressWarnings(as.numeric(unlist(val)))
    if (length(n) != 1L || is.na(n))
        fail("invalid_filter", sprintf("%s must be a number.", what))
    n
}

parse_date <- function(val, what) {
    s <- unlist(val)
    d <- if (is.character(s) && length(s) == 1L)
        tryCatch(as.Date(substr(s, 1L, 10L), format = "%Y-%m-%d"), error = function(e) NA)
        else NA
    if (length(d) != 1L || is.na(d))
        fail("invalid_filter", sprintf("%s must be a date like 2024-01-31.", what))
    d
}

parse_time <- function(val, tz, what) {
    s <- unlist(val)
    bad <- function() fail("invalid_filter",
                           sprintf("%s must be a date-time like 2024-01-31T12:00:00.", what))
    if (!is.character(s) || length(s) != 1L) bad()
    s <- trimws(s)
    offset <- 0
    use_tz <- tz
    m <- regmatches(s, regexec("(Z|[+-][0-9]{2}:?[0-9]{2})$", s))[[1L]]
    if (length(m)) {
        s <- substr(s, 1L, nchar(s) - nchar(m[1L]))
        use_tz <- "UTC"
        if (m[1L] != "Z") {
            o <- gsub(":", "", m[1L])
            offset <- (as.numeric(substr(o, 2L, 3L)) * 3600 + as.numeric(substr(o, 4L, 5L)) * 60) *
                (if (substr(o, 1L, 1L) == "-") -1 else 1)
        }
    }
    t <- NA
    for (f in c("%Y-%m-%dT%H:%M:%OS", "%Y-%m-%d %H:%M:%OS", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M",
                "%Y-%m-%d")) {
        t <- as.POSIXct(strptime(s, f, tz = use_tz))
        if (!is.na(t)) break
    }
    if (is.na(t)) bad()
    t - offset
}

# Comparable value(s) for a filter argument, per column kind.
filter_value <- function(v, j, val, what) {
    kind <- v$kinds[j]
    switch(kind,
        num = parse_num(val, what),
        date = parse_date(val, what),
        time = parse_time(val, attr(view_col(v, j, 1L), "tzone")[1L] %||% "", what),
        lgl = {
            b <- unlist(val)
            if (is.character(b) && length(b) == 1L)
                b <- switch(toupper(b), "TRUE" = , "T" = , "1" = TRUE,
                            "FALSE" = , "F" = , "0" = FALSE, NA)
            b <- as.logical(b)
            if (length(b) != 1L || is.na(b))
                fail("invalid_filter", sprintf("%s must be true or false.", what))
            b
        },
        {
            s <- unlist(val)
            if (length(s) != 1L || is.na(s))
                fail("invalid_filter", sprintf("%s must be a string.", what))
            as.character(s)
        })
}

lower <- function(s) tolower(s)

# Logical mask of filter f over column slice col (NA -> FALSE).
filter_mask <- function(v, j, col, f) {
    op <- f$op
    kind <- v$kinds[j]
    if (!is.character(op) || length(op) != 1L)
        fail("invalid_filter", "A filter needs an 'op'.")
    need <- function(name) {
        if (is.null(f[[name]])) fail("invalid_filter", sprintf("Filter '%s' needs '%s'.", op, name))
        f[[name]]
    }
    # factors: evaluate on the levels, then index by the codes
    if (kind == "fct" && op %in% c("eq", "ne", "lt", "le", "gt", "ge", "between", "in",
                                   "contains", "regex")) {
        lev <- levels(col)
        lv <- make_view_proxy_chr(v)
        lm <- filter_mask(lv, 1L, lev, f)
        codes <- unclass(col)
        out <- lm[codes]
        out[is.na(out)] <- FALSE
        return(out)
    }
    cmp <- function(a, b, fn) {
        r <- fn(a, b)
        r & !is.na(r)
    }
    ops <- list(eq = `==`, ne = `!=`, lt = `<`, le = `<=`, gt = `>`, ge = `>=`)
    data <- if (kind == "other") cell_text(col, kind) else col
    if (op %in% names(ops)) {
        val <- if (kind == "other") as.character(unlist(need("value")))[1L] else
            filter_value(v, j, need("value"), "The filter value")
        return(cmp(data, val, ops[[op]]))
    }
    switch(op,
        between = {
            lo <- if (kind == "other") as.character(unlist(need("min")))[1L] else
                filter_value(v, j, need("min"), "'min'")
            hi <- if (kind == "other") as.character(unlist(need("max")))[1L] else
                filter_value(v, j, need("max"), "'max'")
            if (kind %in% c("num", "date", "time") && is.numeric(unclass(data)) &&
                !inherits(data, "integer64") && has_dt()) {
                r <- data.table::between(unclass(data), unclass(lo), unclass(hi))
                return(r & !is.na(r))
            }
            cmp(data, lo, `>=`) & cmp(data, hi, `<=`)
        },
        is_missing = is.na(col_na(col)),
        not_missing = !is.na(col_na(col)),
        `in` = {
            vals <- need("values")
            if (!is.list(vals)) vals <- as.list(vals)
            has_null <- any(vapply(vals, is.null, NA))
            vals <- vals[!vapply(vals, is.null, NA)]
            parsed <- if (kind %in% c("other")) as.character(unlist(vals)) else
                do.call(c, lapply(vals, function(x) filter_value(v, j, x, "Each value")))
            within <- if (is.character(data) && is.character(parsed) && has_dt())
                data.table::`%chin%` else `%in%`
            m <- if (length(parsed)) within(data, parsed) & !is.na(col_na(col)) else
                logical(length(data))
            if (has_null) m <- m | is.na(col_na(col))
            m
        },
        contains = {
            s <- unlist(need("value"))
            if (length(s) != 1L) fail("invalid_filter", "'contains' needs a text 'value'.")
            text_contains(col, kind, as.character(s))
        },
        regex = {
            p <- unlist(need("pattern"))
            if (!is.character(p) || length(p) != 1L)
                fail("invalid_filter", "'regex' needs a text 'pattern'.")
            txt <- cell_text(col, kind)
            r <- tryCatch(grepl(p, txt, perl = TRUE), error = function(e)
                fail("invalid_filter", sprintf("Invalid regular expression: %s",
                                               conditionMessage(e))))
            r & !is.na(txt)
        },
        fail("invalid_filter", sprintf("Unknown filter op '%s'.", op)))
}

# A one-column character "view" used to evaluate factor filters on the levels.
make_view_proxy_chr <- function(v) {
    p <- new.env(parent = emptyenv())
    p$kinds <- "chr"
    p$source <- v$source
    p
}

# unique(), for text through data.table's radix grouping when it is installed (~1.7x faster
# on 10M strings; the same values in the same order).
distinct <- function(col) {
    if (is.character(col) && has_dt()) unique(data.table::data.table(v = col))$v else
        unique(col)
}

# Rows of a column slice whose text (as shown in the viewer) contains `s`, ignoring case.
# Columns whose text cannot contain `s` (numbers, dates, logicals) are not converted; factors
# are matched on their levels; columns with few distinct values on the distinct values.
text_contains <- function(col, kind, s) {
    s <- lower(s)
    n <- NROW(col)
    if (kind == "fct") {
        lm <- grepl(s, lower(levels(col)), fixed = TRUE)
        r <- lm[unclass(col)]
        return(!is.na(r) & r)
    }
    if (kind == "lgl") {
        ht <- grepl(s, "true", fixed = TRUE)
        hf <- grepl(s, "false", fixed = TRUE)
        return(!is.na(col) & ((col & ht) | (!col & hf)))
    }
    allowed <- switch(kind, num = "^[0-9.e+ainf-]+$", date = "^[0-9-]+$",
                      time = "^[0-9t:+.z-]+$", NULL)
    if (!is.null(allowed) && !grepl(allowed, s)) return(logical(n))
    if (n >= ENGINE_MIN_ROWS) {
        fast <- switch(kind, num = num_contains(col, s), date = date_contains(col, s), NULL)
        if (!is.null(fast)) return(fast)
    }
    if (is.atomic(col) && is.null(dim(col)) && n > 1000L &&
        anyDuplicated(.subset(col, sample_positions(n, 1000L))) > 0L) {
        u <- distinct(col)
        if (length(u) <= n / 2) {
            txt <- cell_text(u, kind)
            uh <- !is.na(txt) & grepl(s, lower(txt), fixed = TRUE)
            return(uh[if (is.character(col) && has_dt()) data.table::chmatch(col, u) else
                      match(col, u)])
        }
    }
    txt <- cell_text(col, kind)
    if (kind %in% c("num", "date") && !grepl("[a-z]", s))
        return(!is.na(txt) & grepl(s, txt, fixed = TRUE))
    !is.na(txt) & grepl(s, lower(txt), fixed = TRUE)
}

# Rows found in a column are not tested in the next ones once they are a quarter of all:
# below that, copying every other column's remaining rows costs more than it saves.
search_mask <- function(v, rows, s) {
    n <- if (is.null(rows)) v$nrow else length(rows)
    hit <- logical(n)
    todo <- NULL  # NULL: every row is tested
    for (j in seq_len(v$ncol)) {
        sub <- if (is.null(todo)) rows else if (is.null(rows)) todo else rows[todo]
        m <- text_contains(view_col(v, j, sub), v$kinds[j], s)
        if (!any(m)) next
        if (is.null(todo)) hit[m] <- TRUE else hit[todo[m]] <- TRUE
        found <- sum(hit)
        if (found == n) break
        if (found >= n / 4) todo <- which(!hit)
    }
    hit
}

order_key <- function(col, kind) {
    if (kind %in% c("num", "lgl", "chr", "fct", "date", "time")) return(col)
    if (typeof(col) %in% c("integer", "double", "logical", "character") && is.null(dim(col)))
        return(col)
    cell_text(col, "other")
}

compute_index <- function(v, sort, filters, search) {
    idx <- NULL
    for (f in filters) {
        if (!is.list(f)) fail("invalid_filter", "Each filter must be an object.")
        j <- col_index(v, f$column)
        col <- view_col(v, j, idx)
        m <- filter_mask(v, j, col, f)
        idx <- if (is.null(idx)) which(m) else idx[m]
    }
    if (!is.null(search) && nzchar(search)) {
        m <- search_mask(v, idx, search)
        idx <- if (is.null(idx)) which(m) else idx[m]
    }
    if (length(sort)) {
        js <- integer(); dec <- logical()
        for (s in sort) {
            if (!is.list(s)) fail("invalid_argument", "Each sort entry must be an object.")
            js <- c(js, col_index(v, s$column))
            dec <- c(dec, isTRUE(s$descending))
        }
        keys <- lapply(js, function(j) order_key(view_col(v, j, idx), v$kinds[j]))
        o <- do.call(order, c(unname(keys), list(na.last = TRUE, decreasing = dec,
                                                 method = "radix")))
        idx <- if (is.null(idx)) o else idx[o]
    }
    idx
}

row_labels <- function(v, rows) {
    x <- v$x
    if (v$is_df) {
        rn <- .row_names_info(x, 0L)
        if (is.integer(rn) && length(rn) == 2L && is.na(rn[1L])) return(as.character(rows))
        return(as.character(rn[rows]))
    }
    rn <- dimnames(x)[[1L]]
    if (is.null(rn)) as.character(rows) else rn[rows]
}

m_view_rows <- function(args) {
    v <- get_view(arg_str(args, "view_id"))
    offset <- arg_int(args, "offset", 0L)
    limit <- arg_int(args, "limit", 100L, min = 0L, max = ROWS_LIMIT)
    sort <- args$sort %||% list()
    filters <- args$filters %||% list()
    search <- args$search
    if (!is.null(search) && (!is.character(search) || length(search) != 1L))
        fail("invalid_argument", "'search' must be a string or null.")
    if (identical(search, "")) search <- NULL
    key <- to_json(list(sort = sort, filters = filters, search = search))
    recomputed <- !identical(key, v$key)
    if (recomputed) {
        v$key <- NULL
        v$idx <- compute_index(v, sort, filters, search)
        v$key <- key
    }
    idx <- v$idx
    total <- if (is.null(idx)) v$nrow else length(idx)
    k <- max(0L, min(limit, total - offset))
    pos <- if (k > 0L) seq.int(offset + 1L, offset + k) else integer()
    rows <- if (is.null(idx)) pos else idx[pos]
    if (k > 0L && v$ncol > 0L) {
        toks <- lapply(seq_len(v$ncol), function(j) cell_tokens(view_col(v, j, rows), v$kinds[j]))
        body <- paste0("[", do.call(paste, c(toks, sep = ",")), "]")
    } else {
        body <- rep.int("[]", k)
    }
    list(total = total, offset = offset, columns = as.list(v$names),
         rows = verbatim(json_array(body)),
         row_labels = verbatim(json_array(json_str(row_labels(v, rows)))),
         recomputed = recomputed)
}

m_view_close <- function(args) {
    id <- arg_str(args, "view_id")
    get_view(id)
    rm(list = id, envir = state$views)
    list(closed = TRUE)
}
