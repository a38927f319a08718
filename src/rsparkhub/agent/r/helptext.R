# The text of installed Rd pages, for the agent's full-text help index (agent/helpindex.py).
#
#     Rscript helptext.R < package-dirs
#
# reads one installed package directory per line on stdin and writes one JSON object per
# help page on stdout: {"source": DIR, "package", "topic", "aliases", "title", "keywords",
# "body"}. A package whose help cannot be read is skipped (a line {"source": DIR,
# "error": "..."}). Runs in its own process, never in the user's kernel; nothing is
# evaluated (no \Sexpr, no examples).
local({
    skip <- c("\\alias", "\\name", "\\title", "\\keyword", "\\concept", "\\docType",
              "\\encoding", "COMMENT", "\\examples", "\\Sexpr", "\\RdOpts", "\\newcommand",
              "\\renewcommand")
    tag <- function(e) { t <- attr(e, "Rd_tag"); if (is.null(t)) "" else t }
    field <- function(rd, t) {
        tags <- vapply(rd, tag, "")
        unlist(rd[tags == t], use.names = FALSE)
    }
    squash <- function(s, sep = " ") trimws(gsub("[[:space:]]+", " ", paste(s, collapse = sep)))
    out <- stdout()
    con <- file("stdin")
    dirs <- readLines(con, warn = FALSE)
    close(con)
    for (dir in dirs) {
        if (!nzchar(dir)) next
        pkg <- basename(dir)
        db <- tryCatch(tools::Rd_db(pkg, lib.loc = dirname(dir)), error = function(e) e)
        if (inherits(db, "error")) {
            writeLines(jsonlite::toJSON(list(source = dir, error = conditionMessage(db)),
                                        auto_unbox = TRUE), out)
            next
        }
        for (rd in db) {
            tags <- vapply(rd, tag, "")
            body <- squash(unlist(rd[!tags %in% skip], use.names = FALSE), "")
            page <- list(source = dir, package = pkg,
                         topic = squash(field(rd, "\\name")),
                         aliases = squash(field(rd, "\\alias")),
                         title = squash(field(rd, "\\title")),
                         keywords = squash(c(field(rd, "\\concept"), field(rd, "\\keyword"))),
                         body = body)
            writeLines(jsonlite::toJSON(page, auto_unbox = TRUE), out)
        }
    }
})
