# How the agent loads its R files into a kernel: the one rule, used by the agent's loaders
# (agent/rload.py `r_load`) and by rsparkhub.R for the files next to it. The file's byte
# code, compiled once per install (`python -m rsparkhub.agent.rload`:
# compiled/<name>-<md5 of the source>-<R version>.Rc), when there is one for this very
# source and R; else the source itself, which R's JIT then compiles function by function on
# their first calls (~0.3 s over a session's first executions). options(rsparkhub.bytecode =
# FALSE) loads the sources (tests that shadow base functions: compiled code calls base's).
function(f, envir) {
    rc <- file.path(dirname(f), "compiled", sprintf(
        "%s-%s-%s.Rc", basename(f), unname(tools::md5sum(f)), getRversion()
    ))
    if (!isFALSE(getOption("rsparkhub.bytecode")) && file.exists(rc)) {
        loaded <- tryCatch({
            compiler::loadcmp(rc, envir = envir)
            TRUE
        }, error = function(e) FALSE)
        if (loaded) return(invisible(NULL))
    }
    sys.source(f, envir = envir, keep.source = FALSE)
}
