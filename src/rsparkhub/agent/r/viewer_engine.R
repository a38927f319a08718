# The data viewer's engine for large columns (viewer.R's text_contains() calls it): the
# same answers as cell_text() + grepl(), without making the text of every value. Integers on
# digit windows or a table of their range, decimals with few places and dates through a
# table of their range (each distinct text made once). loaded by rsparkhub.R into
# the same environment as viewer.R; nothing is kept between calls. Other doubles, for a search
# of digits, on the digits of their text computed without making it (digits_contains).

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
    decimal_contains(col, s) %||% digits_contains(col, s)
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
    int <- is.integer(a) && 10^top <= .Machine$integer.max
    for (p in 0:(top - w)) {
        win <- if (int) (a %/% as.integer(10^p)) %% as.integer(10^w) else (a %/% 10^p) %% 10^w
        at <- which(win == v)
        at <- at[!hit[at]]
        if (startsWith(d, "0")) at <- at[a[at] >= 10^(p + w - 1L)]  # inside the digits
        hit[at] <- TRUE
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
    tbl <- (r[1L] + seq.int(0, r[2L] - r[1L])) / sc  # the same doubles as x
    th <- if (digits_only(s) && digits_model_holds(tbl)) digits_chunk(tbl, s) else
        grepl(s, lower(double_text(tbl)), fixed = TRUE)
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


# ---------------------------------------------------------------------------------------
# Doubles of any kind (random measures), for a search of 1–8 digits: matched on the digits of
# the text as.character() writes, without making that text (R formats ~1 M doubles a second:
# minutes for a big frame). For 1e-3 <= |x| < 1e15 with decimals R writes fixed notation with
# nsig <= 15 significant digits: alpha = |x| * 10^(14 - k), k = floor(log10 |x|), rounded to an
# integer of 15 digits (R computes it in long double: the exact product, except within 1e-4 of
# a tie), then drops alpha's trailing zeros. Here alpha comes from the double product, whose
# error is below 0.07, and near a tie from the exact product (Dekker's two-product); rows
# still within 1e-3 of a tie, and all other values (whole, tiny, huge), get R's own text. A
# sample is rebuilt as text and compared with as.character() first: an R that writes numbers
# otherwise gets the plain way.

DIGITS_CHUNK <- 1048576L  # rows per pass: 8 MB vectors, reused by malloc instead of faulted in
P10 <- as.integer(10^(0:9))
SCALES <- 10^(0:18)

digits_only <- function(s) grepl("^[0-9]{1,8}$", s)

digits_contains <- function(x, s) {
    if (!digits_only(s) || !digits_model_holds(x)) return(NULL)
    n <- length(x)
    hit <- logical(n)
    for (from in seq.int(1L, n, by = DIGITS_CHUNK)) {
        i <- from:min(n, from + DIGITS_CHUNK - 1L)
        hit[i] <- digits_chunk(x[i], s)
    }
    hit
}

digits_chunk <- function(x, s) {
    r <- abs(x)
    fin <- is.finite(x)
    fixed <- fin & r >= 1e-3 & r < 1e15 & x != trunc(x)
    hit <- logical(length(x))
    at <- which(fixed)
    d <- fixed_digits(r[at])
    hit[at] <- window_hits(d, s)
    own <- c(which(fin & !fixed), at[!d$ok])  # R's own text
    if (length(own)) hit[own] <- grepl(s, as.character(x[own]), fixed = TRUE)
    hit
}

two_prod_error <- function(a, b) {  # a * b - fl(a * b), exactly (Dekker)
    ca <- 134217729 * a; ah <- ca - (ca - a); al <- a - ah
    cb <- 134217729 * b; bh <- cb - (cb - b); bl <- b - bh
    ((ah * bh - a * b) + ah * bl + al * bh) + al * bl
}

# alpha split in hi (its first 7 digits) and lo (last 8) as integers, k, and ok = FALSE
# where R's own text must be asked.
fixed_digits <- function(r) {
    k <- as.integer(floor(log10(r)))
    scale <- SCALES[pmax(15L - k, 1L)]  # 10^(14 - k); log10 may give 15 just below 1e15
    p <- r * scale
    low <- which(p < 1e14)  # log10 rounded up across a power of ten: R takes one more digit
    if (length(low)) {
        k[low] <- k[low] - 1L
        scale[low] <- scale[low] * 10
        p[low] <- r[low] * scale[low]
    }
    alpha <- round(p)
    f <- p - alpha
    ok <- abs(p - 1e14) > 1
    near <- which(abs(abs(f) - 0.5) < 0.07)
    if (length(near)) {
        fe <- f[near] + two_prod_error(r[near], scale[near])
        alpha[near] <- alpha[near] + (fe > 0.5) - (fe < -0.5)
        ok[near] <- ok[near] & abs(abs(fe) - 0.5) > 1e-3
    }
    ok <- ok & alpha < 1e15 & alpha >= 1e14
    hi <- alpha %/% 1e8
    list(hi = as.integer(hi), lo = as.integer(alpha - hi * 1e8), k = k, ok = ok)
}

# Trailing zeros of alpha (where its text ends).
trailing_zeros <- function(hi, lo) {
    z <- ifelse(lo == 0L, 8L, 0L)
    t <- ifelse(lo == 0L, hi, lo)
    live <- which(t %% 10L == 0L & t != 0L)
    while (length(live)) {
        z[live] <- z[live] + 1L
        t[live] <- t[live] %/% 10L
        live <- live[t[live] %% 10L == 0L]
    }
    z
}

# Digit positions p (from the right) of alpha, as 17 digits (two leading zeros: |x| < 1e-1
# puts "0.0" before them): the integer part is 14-k..14 (k >= 0), the decimals z..13-k. A
# window of s's digits counts when it lies inside one of the two; "0" also matches the "0."
# of |x| < 1.
window_hits <- function(d, s) {
    L <- nchar(s)
    v <- as.integer(s)
    hi <- d$hi
    lo <- d$lo
    k <- d$k
    hit <- if (s == "0") k < 0L else logical(length(k))
    z <- NULL
    for (p in 0:(17L - L)) {
        w <- if (p + L <= 8L) (lo %/% P10[p + 1L]) %% P10[L + 1L]
             else if (p >= 8L) (hi %/% P10[p - 7L]) %% P10[L + 1L]
             else (hi %% P10[p + L - 7L]) * P10[9L - p] + lo %/% P10[p + 1L]
        at <- which(w == v)
        at <- at[!hit[at]]
        if (!length(at)) next
        if (is.null(z)) z <- trailing_zeros(hi, lo)
        ka <- k[at]
        inside <- (ka >= 0L & p >= 14L - ka & p + L <= 15L) |
            (p >= z[at] & p + L <= 14L - ka)
        hit[at[inside]] <- TRUE
    }
    hit
}

# The text of alpha's digits (for the check of a sample).
digits_text <- function(d, neg) {
    alpha <- d$hi * 1e8 + d$lo
    k <- d$k
    z <- trailing_zeros(d$hi, d$lo)
    wf <- 14L - k  # digits after the point before dropping trailing zeros
    ip <- ifelse(k >= 0L, sprintf("%.0f", alpha %/% 10^pmax(wf, 0L)), "0")
    fd <- sprintf("%0*.0f", wf, alpha %% 10^pmin(wf, 15L))
    fd <- substr(fd, 1L, pmax(wf - z, 0L))
    paste0(ifelse(neg, "-", ""), ip, ifelse(nzchar(fd), ".", ""), fd)
}

digits_model_holds <- function(x) {
    probe <- x[sample_positions(length(x), 2000L)]
    probe <- probe[is.finite(probe) & abs(probe) >= 1e-3 & abs(probe) < 1e15 &
                   probe != trunc(probe)]
    d <- fixed_digits(abs(probe))
    all(digits_text(d, probe < 0)[d$ok] == as.character(probe[d$ok]))
}
