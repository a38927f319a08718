"""The agent's R files as byte code (``agent/rload.py``, ``r/load.R``): compiled once per
install, loaded when compiled from the very source by the very R, else the source — a stale
or broken compiled file costs time, never a feature. Real R (``Rscript``) throughout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rsparkhub.agent import rload
from rsparkhub.agent.introspect import r_tools

# After loading: how many of the implementation's functions are byte code / not, what
# one of rsparkhub.R's and one of viewer_engine.R's is, and whether the loaded code answers
# (env_list of an empty global environment).
CHECK = r"""
h <- get(".rsparkhub", envir = as.environment("tools:rsparkhub"))
kinds <- vapply(Filter(is.function, mget(ls(h, all.names = TRUE), h)),
                function(f) typeof(.Internal(bodyCode(f))), "")
out <- tempfile(fileext = ".json")
h$call("env_list", "{}", out)
cat("RESULT", sum(kinds == "bytecode"), sum(kinds != "bytecode"),
    kinds[["fingerprints"]], kinds[["digits_chunk"]],
    grepl('"variables"', paste(readLines(out, warn = FALSE), collapse = "")), "\n")
"""


def load_and_check(r_dir: Path) -> tuple[int, int, str, str, bool]:
    """(byte-code functions, other functions, what rsparkhub.R's ``fingerprints`` is, what
    viewer_engine.R's ``digits_chunk`` is, answered) after loading r_dir's rsparkhub.R as
    kernels do."""
    proc = subprocess.run(
        ["Rscript", "--vanilla", "-e", r_tools(r_dir / "rsparkhub.R") + CHECK],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    _, compiled, other, own, sibling, answered = line.split()
    return int(compiled), int(other), own, sibling, answered == "TRUE"


@pytest.fixture
def r_copy(tmp_path: Path) -> Path:
    """The agent's R files in a directory of the test's own."""
    r_dir = tmp_path / "r"
    r_dir.mkdir()
    for f in rload.R_DIR.glob("*.R"):
        shutil.copy(f, r_dir / f.name)
    return r_dir


def test_every_source_compiles_and_loads_as_byte_code(r_copy: Path) -> None:
    assert not rload.up_to_date(r_copy)
    names = rload.compile_all(r_copy)
    version = rload.r_version()
    assert sorted(names) == sorted(
        f"{n}-{rload._md5(r_copy / n)}-{version}.Rc" for n in rload.SOURCES
    )
    compiled = r_copy / "compiled"
    assert sorted(p.name for p in compiled.iterdir()) == sorted(names)  # nothing staged
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in compiled.iterdir())
    assert rload.up_to_date(r_copy)
    byte_code, other, *kinds, answered = load_and_check(r_copy)
    assert (byte_code > 100, other, kinds, answered) == (True, 0, ["bytecode"] * 2, True)


def test_a_stale_or_broken_compiled_file_falls_back_to_the_source(r_copy: Path) -> None:
    rload.compile_all(r_copy)
    # a source changed after the install compiled it: its old byte code is not used
    source = r_copy / "rsparkhub.R"
    source.write_text(source.read_text() + "\n# changed\n")
    assert not rload.up_to_date(r_copy)
    assert load_and_check(r_copy)[2:] == ("language", "bytecode", True)
    # a compiled file that cannot be read: loaded from the source all the same
    rload.compile_all(r_copy)
    (stale,) = (r_copy / "compiled").glob("rsparkhub.R-*.Rc")
    stale.chmod(0o644)
    stale.write_bytes(b"not byte code")
    assert load_and_check(r_copy)[2:] == ("language", "bytecode", True)


def test_the_install_compiled_the_agents_r_files() -> None:
    """scripts/install.sh (which the test command runs first) compiled them, so sessions
    load byte code: R's JIT does not compile them on a kernel's first calls."""
    assert rload.up_to_date(), "run scripts/install.sh (python -m rsparkhub.agent.rload)"
    byte_code, other, *kinds, answered = load_and_check(rload.R_DIR)
    assert (byte_code > 100, other, kinds, answered) == (True, 0, ["bytecode"] * 2, True)
