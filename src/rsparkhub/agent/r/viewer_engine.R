# The data viewer's engine for large columns (viewer.R's text_contains() calls it): the
# same answers as cell_text() + grepl(), without making the text of every value. Integers on
# digit windows or a table of their range, decimals with few places and dates through a
# table of their range (each distinct text made once). sys.source()-d by rsparkhub.R into
# the same environment as viewer.R; nothing is kept between calls.

ENGINE_MIN_ROWS <- 100000L  # below this the plain way is as fast
TABLE_MAX <- 1048576        # distinct values of a range formatted once for a lookup table

has_dt <- function() requireNamespace("data.table", quietly = TRUE)

no_na <- function(m) { m[is.na(m)] <- FALSE; m }

# Numbers (kind num): which values' text (num_text) contains `s` (lower case); NULL when
# this column needs the plain way.
num_contains <- function(col, s) {
    if (is.object(col) || !(is.double(col) || is.integer(col))) return(NULL)
    if (is.integer(col)) return(whole_contains(col, s))
    fin <- is.finite(col)
    if (all(!fin | (col == trunc(col) & abs(col) < 2^31)))  # num_text's integer text
        return(whole_contains(col, s))
    decimal_contains(col, s)
}

# Text of -Inf / Inf (NaN and NA are missing: never found).
infinite_hits <- function(x, hit, s) {
    if (!is.double(x)) return(hit)
    inf <- which(is.infinite(x))
    if (length(inf)) hit[inf] <- grepl(s, ifelse(x[inf] > 0, "inf", "-inf"), fixed = TRUE)
    hit
}

# Whole numbers shown as integers: a table of their range when it is small, else digit
# windows (`|x| %% 10^(p+L)` in [v*10^p, (v+1)*10^p)) — no text at all.
whole_contains <- function(x, s) {
    r <- suppressWarnings(range(x, finite = TRUE))
    if (!all(is.finite(r))) return(infinite_hits(x, logical(length(x)), s))
    if (r[2L] - r[1L] < TABLE_MAX) {
        th <- grepl(s, as.character(seq.int(as.integer(r[1L]), as.integer(r[2L]))), fixed = TRUE)
        hit <- th[x - r[1L] + 1]
    } else if (grepl("^-?[0-9]*$", s)) {
        hit <- digit_windows(x, s, nchar(as.character(as.integer(max(abs(r))))))
    } else {
        hit <- logical(length(x))  # other text never occurs in an integer
    }
    no_na(infinite_hits(x, hit, s))
}

digit_windows <- function(x, s, top) {
    a <- abs(x)
    neg <- startsWith(s, "-")
    d <- if (neg) substring(s, 2L) else s
    if (neg && !nzchar(d)) return(x < 0)
    w <- nchar(d)
    v <- as.numeric(d)
    hit <- logical(length(x))
    if (w > top) return(hit)
    if (neg) {  # "-" only starts the text: |x| starts with the digits
        for (k in w:top)
            hit <- hit | (a >= 10^(k - 1L) & a < 10^k & a %/% 10^(k - w) == v)
        return(x < 0 & hit)
    }
    for (p in 0:(top - w)) {
        m <- 10^(p + w)
        rem <- if (is.integer(a) && m <= .Machine$integer.max) a %% as.integer(m) else a %% m
        win <- rem >= v * 10^p & rem < (v + 1) * 10^p
        if (startsWith(d, "0")) win <- win & a >= 10^(p + w - 1L)  # inside the digits
        hit <- hit | win
    }
    if (d == "0") hit <- hit | a == 0
    hit
}

# Decimals with at most 3 places over a small range (prices, rounded measures): the text of
# each value of the range once (as.character, as num_text), looked up by position.
decimal_contains <- function(x, s) {
    n <- length(x)
    probe <- x[sample_positions(n, 2000L)]
    probe <- probe[is.finite(probe)]
    sc <- NULL
    for (p in 0:3) if (all(round(probe * 10^p) / 10^p == probe)) { sc <- 10^p; break }
    if (is.null(sc)) return(NULL)
    m <- round(x * sc)
    if (!all(m / sc == x | !is.finite(x), na.rm = TRUE)) return(NULL)
    r <- suppressWarnings(range(m, finite = TRUE))
    if (!all(is.finite(r)) || r[2L] - r[1L] >= TABLE_MAX || max(abs(r)) >= 2^52) return(NULL)
    txt <- double_text((r[1L] + seq.int(0, r[2L] - r[1L])) / sc)  # the same doubles as x
    th <- grepl(s, lower(txt), fixed = TRUE)
    no_na(infinite_hits(x, th[m - r[1L] + 1], s))
}

# Dates (whole days) over at most TABLE_MAX days: each day's text once.
date_contains <- function(col, s) {
    x <- unclass(col)
    if (!is.numeric(x)) return(NULL)
    r <- suppressWarnings(range(x, finite = TRUE))
    if (!all(is.finite(r))) return(logical(length(x)))
    if (r[2L] - r[1L] >= TABLE_MAX || !all(x == floor(x), na.rm = TRUE)) return(NULL)
    days <- seq.int(r[1L], r[2L])
    th <- grepl(s, format(structure(as.double(days), class = "Date"), "%Y-%m-%d"), fixed = TRUE)
    no_na(th[x - r[1L] + 1])
}

