"""The agent's R files in a kernel, as byte code compiled once per install.

R's JIT compiles a closure on its first call, so the session's own R code (introspection,
the environment diff, source mode: ``r/*.R``) cost a fresh kernel ~0.3 s over its first
executions. ``python -m rsparkhub.agent.rload`` (run by scripts/install.sh and by the
images' Dockerfiles) compiles every file once into ``r/compiled/`` with
``compiler::cmpfile``; ``r_load`` makes the R code that loads a file — its byte code when
it was compiled from this very source by this very R, else the source (``r/load.R`` holds
that rule, for rsparkhub.R's own loading of the files next to it too). A missing,
stale or unreadable compiled file only costs the JIT's time.

Owns: the compiled directory. Must not: be needed: everything works from the sources.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

R_DIR = Path(__file__).parent / "r"
COMPILED = R_DIR / "compiled"
LOADER = R_DIR / "load.R"
# Sources run in kernels; load.R itself is parsed, not compiled.
SOURCES = ("rsparkhub.R", "viewer.R", "viewer_engine.R", "source.R", "reply.R", "spark.R")

_COMPILE = r"""
args <- commandArgs(trailingOnly = TRUE)
out_dir <- args[[1]]
compiler::setCompilerOptions(suppressAll = TRUE)
for (f in args[-1]) {
    name <- sprintf("%s-%s-%s.Rc", basename(f), unname(tools::md5sum(f)), getRversion())
    tmp <- file.path(out_dir, paste0(".", name, ".tmp"))
    compiler::cmpfile(f, tmp, verbose = FALSE)
    file.rename(tmp, file.path(out_dir, name))
    cat("compiled:", name, "\n")
}
"""


def r_load(path: Path, envir: str) -> str:
    """R code that loads ``path`` into the environment ``envir`` (an R expression)."""
    from rsparkhub.agent.modes import r_string  # modes loads its R files with this

    return (
        f"eval(parse({r_string(str(LOADER))}, keep.source = FALSE)[[1]])"
        f"({r_string(str(path))}, {envir})"
    )


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def compile_all(r_dir: Path = R_DIR) -> list[str]:
    """Compile every source of ``r_dir`` into its ``compiled/`` (made in a new directory,
    then put in place; compiled files of other sources or R versions go). The names
    written."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return []
    out = r_dir / COMPILED.name
    staging = Path(tempfile.mkdtemp(prefix=".compiled-", dir=r_dir))
    try:
        files = [str(r_dir / name) for name in SOURCES]
        done = subprocess.run(
            [rscript, "--vanilla", "-e", _COMPILE, str(staging), *files],
            check=True, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        names = [ln.split()[1] for ln in done.stdout.splitlines() if ln.startswith("compiled:")]
        staging.chmod(0o755)
        for name in names:
            (staging / name).chmod(0o644)
        old = out.with_name(f".{out.name}-old-{os.getpid()}")
        if out.exists():
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        return names
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def r_version() -> str | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    done = subprocess.run(
        [rscript, "--vanilla", "-e", "cat(as.character(getRversion()))"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip() or None


def up_to_date(r_dir: Path = R_DIR) -> bool:
    """Whether ``r_dir/compiled`` holds the compiled file of every source for this R."""
    version = r_version()
    return version is not None and all(
        (r_dir / COMPILED.name / f"{name}-{_md5(r_dir / name)}-{version}.Rc").is_file()
        for name in SOURCES
    )


def main() -> int:
    if shutil.which("Rscript") is None:
        print("rload: no Rscript: R sessions load the agent's R sources (nothing compiled)")
        return 0
    if "--if-needed" in sys.argv and up_to_date():
        print(f"rload: the agent's R byte code is up to date ({COMPILED})")
        return 0
    try:
        names = compile_all()
    except (OSError, subprocess.SubprocessError) as exc:
        err = getattr(exc, "stderr", "") or ""
        print(f"rload: could not compile the agent's R files: {exc} {err}", file=sys.stderr)
        return 1
    print(f"rload: compiled {len(names)} R files into {COMPILED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
