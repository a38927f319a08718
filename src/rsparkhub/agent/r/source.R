# Source mode for R: `source(FILE, echo = TRUE)` as an interactive R prints it, with each plot
# sent right after the expression that drew (or finished) it.
#
# The agent attaches this file when an R kernel starts (rsparkhub.agent.modes, R_INIT):
#
#     local({ e <- attach(NULL, name = "tools:rsparkhub.source")
#             sys.source("/abs/path/source.R", envir = e, keep.source = FALSE) })
#
# and runs a file in source mode as `get("source_echo", "tools:rsparkhub.source")(FILE)`.
#
# Echo. The file is parsed with its srcrefs, as `source()` does with `keep.source = TRUE`, and
# the echo is the loop of base R's `source()` (R 4.2, `echo = TRUE`, `spaced = TRUE`): before
# each expression a blank line, then the file's own lines from the end of the previous
# expression to the end of this one (leading blank lines dropped), the lines before the
# expression's first line with the prompt (`> `, comments included) and the rest with the
# continuation prompt (`+ `); after the last expression the file's trailing lines. Values are
# printed as `source(print.eval = TRUE)` prints them (`show()` for S4 objects). One
# difference: long expressions are echoed whole (`max.deparse.length = Inf`), not cut at 150
# characters with "[TRUNCATED]".
#
# Plots. IRkernel evaluates the request (one top-level call: this function) with evaluate,
# whose graphics handler (IRkernel's `handle_graphics`) keeps the last plot and sends it only
# when a plot that does not build upon it starts, or when the request ends. So after each
# expression the plot is handed over (`handle_output(TRUE)` of evaluate's running call, which
# also sends pending text) and the kept plot is sent before the next expression is echoed,
# unless that expression adds to the plot (it calls a low-level graphics function such as
# `lines()` or `abline()`, also inside a loop or block, or passes `add = TRUE`): then the plot
# goes out after it, finished. (A user function that draws on the plot is not recognised: the
# plot is then shown before and after it.) On an error the kept plot goes out before the
# error. If evaluate's or IRkernel's
# internals are not as expected, plots come at the end of the request, as before.

LOW_LEVEL_GRAPHICS <- c(
    "abline", "arrows", "axis", "Axis", "box", "grid", "legend", "lines", "matlines",
    "matpoints", "mtext", "points", "polygon", "polypath", "rasterImage", "rect", "rug",
    "segments", "text", "title", "xspline", "clip", "contour.add"
)

# evaluate's running `evaluate_call` frame (where `handle_output` and `output_handler` live).
evaluate_frame <- function() {
    ev <- tryCatch(get(".env", envir = asNamespace("evaluate")), error = function(e) NULL)
    f <- if (is.environment(ev)) ev$flush_console else NULL
    fe <- if (is.function(f)) environment(f) else NULL
    if (is.environment(fe) && is.function(fe$handle_output)) fe else NULL
}

# Hand a new or changed plot to IRkernel's graphics handler; send pending text.
capture_plot <- function() {
    fe <- evaluate_frame()
    if (!is.null(fe)) suspendInterrupts(tryCatch(fe$handle_output(TRUE), error = function(e) NULL))
    invisible(NULL)
}

# Send the plot IRkernel keeps (it would otherwise wait for the end of the request).
send_kept_plot <- function() {
    capture_plot()
    fe <- evaluate_frame()
    g <- if (is.null(fe)) NULL else tryCatch(fe$output_handler$graphics, error = function(e) NULL)
    x <- if (is.function(g)) environment(g) else NULL
    if (!is.environment(x) || !exists("last_recorded_plot", envir = x, inherits = FALSE) ||
        !is.function(x$send_plot)) return(invisible(NULL))
    plot <- x$last_recorded_plot
    if (is.null(plot)) return(invisible(NULL))
    assign("last_recorded_plot", NULL, envir = x)
    suspendInterrupts(tryCatch(x$send_plot(plot), error = function(e) NULL))
    invisible(NULL)
}

# Does this top-level expression add to the current plot? It calls (anywhere, also in a loop
# or a block, not in a function it defines) a low-level graphics function, or passes
# `add = TRUE`.
adds_to_plot <- function(expr) {
    tryCatch(calls_low_level(expr), error = function(e) FALSE)
}

calls_low_level <- function(expr) {
    if (!is.call(expr)) return(FALSE)
    fun <- expr[[1L]]
    if (identical(fun, as.name("function"))) return(FALSE)
    if (is.call(fun) && length(fun) == 3L &&
        (identical(fun[[1L]], as.name("::")) || identical(fun[[1L]], as.name(":::"))))
        fun <- fun[[3L]]
    if (is.symbol(fun) && as.character(fun) %in% LOW_LEVEL_GRAPHICS) return(TRUE)
    args <- as.list(expr)[-1L]
    if ("add" %in% names(args) && isTRUE(args[["add"]])) return(TRUE)
    for (i in seq_along(args)) {
        if (identical(args[[i]], quote(expr = ))) next
        if (calls_low_level(args[[i]])) return(TRUE)
    }
    FALSE
}

source_echo <- function(file, envir = globalenv()) {
    con <- file(file, "r", encoding = getOption("encoding"))
    lines <- tryCatch(readLines(con, warn = FALSE), finally = close(con))
    srcfile <- srcfilecopy(file, lines, file.mtime(file)[1L], isFile = TRUE)
    exprs <- parse(text = lines, srcfile = srcfile, keep.source = TRUE)
    prompt.echo <- getOption("prompt")
    continue.echo <- getOption("continue")
    srcrefs <- attr(exprs, "srcref")
    Ne <- length(exprs)
    lastshown <- 0
    yy <- NULL
    for (i in seq_len(Ne + 1L)) {
        tail <- i > Ne
        if (tail || !adds_to_plot(exprs[[i]])) send_kept_plot()
        srcref <- if (tail) attr(exprs, "wholeSrcref") else if (i <= length(srcrefs)) srcrefs[[i]]
        if (!is.null(srcref) && lastshown < srcref[3L]) {
            dep <- tryCatch(suppressWarnings(getSrcLines(attr(srcref, "srcfile"),
                                                         lastshown + 1, srcref[3L])),
                            error = function(e) character())
            if (length(dep)) {
                leading <- if (tail) length(dep) else srcref[1L] - lastshown
                lastshown <- srcref[3L]
                while (length(dep) && grepl("^[[:blank:]]*$", dep[1L])) {
                    dep <- dep[-1L]
                    leading <- leading - 1L
                }
                dep <- paste0(rep.int(c(prompt.echo, continue.echo),
                                      pmax(0L, c(leading, length(dep) - leading))),
                              dep, collapse = "\n")
                if (nchar(dep, "c")) cat("\n", dep, "\n", sep = "")
            }
        }
        if (tail) break
        ei <- exprs[i]
        yy <- withCallingHandlers(withVisible(eval(ei, envir)),
                                  error = function(e) send_kept_plot())
        if (yy$visible) {
            if (isS4(yy$value)) methods::show(yy$value) else print(yy$value)
        }
        capture_plot()
    }
    invisible(yy)
}
