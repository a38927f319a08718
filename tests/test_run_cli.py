"""``rsparkhub run`` end to end: a real hub, a real sandboxed session, real R/Python/bash.

The R script fits a model with ``nls``, prints its summary, makes a plot and builds a data
frame. Run mode must print exactly what ``Rscript FILE`` prints; source mode exactly what
``source(FILE, echo = TRUE)`` prints."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import RSPARKHUB, HubProcess

R_SCRIPT = """\
set.seed(42)
x <- seq(1, 10, length.out = 25)
y <- 2.5 * exp(0.25 * x) + rnorm(length(x), sd = 0.3)
fit <- nls(y ~ a * exp(b * x), start = list(a = 1, b = 0.2))
summary(fit)
coef(fit)
plot(x, y, main = "nls fit")
lines(x, predict(fit), col = "red")
df <- data.frame(x = x, y = y, fitted = predict(fit))
head(df)
message("fitted ", nrow(df), " points")
for (i in 1:3) {
  print(i^2)
}
invisible(df)
"""


def _run(hub: HubProcess, token: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RSPARKHUB_URL": hub.url, "RSPARKHUB_TOKEN": token}
    return subprocess.run(
        [RSPARKHUB, "run", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=180
    )


def test_r_run_mode_matches_rscript(shared_hub: HubProcess, alice: str, tmp_path: Path) -> None:
    script = tmp_path / "fit.R"
    script.write_text(R_SCRIPT)
    expected = subprocess.run(
        ["Rscript", str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert expected.returncode == 0, expected.stderr
    plots = tmp_path / "plots"
    got = _run(
        shared_hub,
        alice,
        str(script),
        "--workspace",
        "nls",
        "--mode",
        "run",
        "--plots-dir",
        str(plots),
        cwd=tmp_path,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout == expected.stdout
    assert "fitted 25 points" in got.stderr
    pngs = sorted(plots.glob("*.png"))
    assert len(pngs) == 1
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_r_source_mode_matches_source_echo(
    shared_hub: HubProcess, alice: str, tmp_path: Path
) -> None:
    script = tmp_path / "fit.R"
    script.write_text(R_SCRIPT)
    expected = subprocess.run(
        # What an interactive R prints: the file's own lines (keep.source = TRUE).
        ["Rscript", "-e", 'options(keep.source = TRUE); source("fit.R", echo = TRUE)'],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert expected.returncode == 0, expected.stderr
    plots = tmp_path / "plots"
    got = _run(
        shared_hub,
        alice,
        str(script),
        "--workspace",
        "nls-src",
        "--mode",
        "source",
        "--plots-dir",
        str(plots),
        cwd=tmp_path,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout == expected.stdout
    assert "> fit <- nls(y ~ a * exp(b * x)" in got.stdout
    assert len(list(plots.glob("*.png"))) == 1


def test_python_and_bash_run_mode(shared_hub: HubProcess, alice: str, tmp_path: Path) -> None:
    py = tmp_path / "hello.py"
    py.write_text("import sys\nprint('out', 6 * 7)\nprint('err', file=sys.stderr)\n2 + 2\n")
    got = _run(shared_hub, alice, str(py), "--workspace", "py", cwd=tmp_path)
    expected = subprocess.run(["python3", str(py)], capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert got.stdout == expected.stdout == "out 42\n"
    assert "err" in got.stderr
    sh = tmp_path / "hello.sh"
    sh.write_text("echo one\nfor i in 1 2; do\n  echo item $i\ndone\n")
    got = _run(shared_hub, alice, str(sh), "--workspace", "sh", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout == "one\nitem 1\nitem 2\n"


def test_failing_code_exits_nonzero(shared_hub: HubProcess, alice: str, tmp_path: Path) -> None:
    script = tmp_path / "bad.R"
    script.write_text('cat("before\\n")\nstop("boom")\ncat("after\\n")\n')
    got = _run(shared_hub, alice, str(script), "--workspace", "bad", cwd=tmp_path)
    assert got.returncode == 1
    assert got.stdout == "before\n"
    assert "boom" in got.stderr


def test_with_dir_uploads_neighbours(shared_hub: HubProcess, alice: str, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "values.csv").write_text("v\n1\n2\n3\n")
    (proj / "main.R").write_text('d <- read.csv("data/values.csv")\ncat(sum(d$v), "\\n")\n')
    got = _run(
        shared_hub,
        alice,
        str(proj / "main.R"),
        "--with",
        str(proj),
        "--workspace",
        "withdir",
        cwd=tmp_path,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout == "6 \n"
