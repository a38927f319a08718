"""reprodiff on real files: PNGs written by R's png() and by matplotlib, SVGs, CSVs written
by R, transcripts with timestamps and addresses, environment snapshots; and the module runs
with a plain ``python3`` outside the package (as it does inside an export bundle)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rsparkhub import reprodiff as rd

ROOT = Path(__file__).resolve().parents[1]


def _r(code: str, cwd: Path) -> None:
    out = subprocess.run(["Rscript", "-e", code], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def _mpl(code: str, cwd: Path) -> None:
    prelude = "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
    out = subprocess.run(
        [sys.executable, "-c", prelude + code], cwd=cwd, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("images")
    _r(
        'png("r1.png", 200, 150); plot(1:10); dev.off();'
        'png("r2.png", 200, 150); plot(1:10); dev.off();'
        'png("r3.png", 200, 150); plot(10:1); dev.off();'
        'png("small.png", 160, 160); plot(1:10); dev.off();'
        'svg("r1.svg"); plot(1:3); dev.off(); svg("r2.svg"); plot(1:3); dev.off();'
        'svg("r3.svg"); plot(3:1); dev.off();'
        'write.csv(data.frame(v = 1:4, w = c("a", "b", "c", "d")), "a.csv", row.names = FALSE);'
        'write.csv(data.frame(v = c(1, 2, 30, 4), w = c("a", "b", "c", "d")), "b.csv",'
        " row.names = FALSE);"
        'write.csv(data.frame(v = c(1:4, 5), w = c("a", "b", "c", "d", "e")), "c.csv",'
        " row.names = FALSE)",
        d,
    )
    _mpl(
        "plt.plot([1, 2, 3]); plt.savefig('m1.png')\n"
        "plt.figure(); plt.plot([1, 2, 3]); plt.savefig('m2.png')\n"
        "plt.figure(); plt.plot([1, 2, 3.3]); plt.savefig('m3.png')\n"
        "plt.figure(); plt.plot([1, 2, 3]); plt.savefig('m1.svg')\n"
        "plt.figure(); plt.plot([1, 2, 3]); plt.savefig('m2.svg')\n",
        d,
    )
    return d


def test_pngs_from_r_and_matplotlib_decode_and_compare_by_pixels(images: Path) -> None:
    for name, size in (("r1.png", (200, 150)), ("m1.png", (640, 480))):
        w, h, rows = rd.decode_png((images / name).read_bytes())
        assert (w, h) == size and len(rows) == h and all(len(r) == 4 * w for r in rows)
    # R draws white paper: the corner pixel is opaque white
    _w, _h, rows = rd.decode_png((images / "r1.png").read_bytes())
    assert rows[0][:4] == b"\xff\xff\xff\xff"

    same = rd.png_difference((images / "r1.png").read_bytes(), (images / "r2.png").read_bytes())
    assert same[0] == 0.0
    frac, _ = rd.png_difference((images / "r1.png").read_bytes(), (images / "r3.png").read_bytes())
    assert 0.001 < frac < 0.2
    frac, note = rd.png_difference(
        (images / "r1.png").read_bytes(), (images / "small.png").read_bytes()
    )
    assert frac == 1.0 and note == "size 200×150 → 160×160"
    frac, _ = rd.png_difference((images / "m1.png").read_bytes(), (images / "m3.png").read_bytes())
    assert 0 < frac < 0.1

    s = rd.Settings()
    a, b = (rd.Plot("image/png", (images / n).read_bytes()) for n in ("m1.png", "m3.png"))
    d = rd.compare_plot(2, a, b, s)
    assert d is not None and d.cause.startswith("plot 2 differs in ") and "% of pixels" in d.cause
    assert rd.compare_plot(1, a, rd.Plot("image/png", (images / "m2.png").read_bytes()), s) is None
    # the threshold is the setting: 50 % tolerated, no difference
    assert rd.compare_plot(2, a, b, rd.Settings(plot_threshold=0.5)) is None


def test_svg_compares_as_normalised_text(images: Path) -> None:
    s = rd.Settings()
    svg = [rd.Plot("image/svg+xml", (images / n).read_bytes()) for n in ("r1.svg", "r2.svg")]
    assert rd.compare_plot(1, svg[0], svg[1], s) is None
    other = rd.Plot("image/svg+xml", (images / "r3.svg").read_bytes())
    d = rd.compare_plot(1, svg[0], other, s)
    assert d is not None and d.cause == "plot 1 (SVG) differs" and d.details
    # matplotlib's SVGs carry their creation date and random clip ids: normalised away
    mpl = [(images / n).read_text() for n in ("m1.svg", "m2.svg")]
    assert rd.normalise_svg(mpl[0]) == rd.normalise_svg(mpl[1])


def test_csv_data_diff_names_cells_and_rows(images: Path) -> None:
    a, b, c = ((images / n).read_bytes() for n in ("a.csv", "b.csv", "c.csv"))
    assert rd.csv_diff(a, b) == ["1 cell(s) changed in 4 rows", "  line 4, column v: '3' → '30'"]
    assert rd.csv_diff(a, c) == ["rows 4 → 5: 1 added, 0 removed", "  + 5,e"]
    d = rd.compare_file("out/b.csv", a, b, rd.Settings())
    assert d is not None and d.cause.startswith("file out/b.csv differs (sha256 ")
    assert rd.compare_file("a.csv", a, a, rd.Settings()) is None


def test_transcripts_ignore_timestamps_addresses_and_durations() -> None:
    one = (
        "[1] 2.5\nstarted 2026-12-06 19:02:30 UTC\n<environment: 0x55d5c8a3e0b8>\n"
        "took 1.23 s\n   user  system elapsed \n  0.004   0.000   0.004 \nend\n"
    )
    two = (
        "[1] 2.5\nstarted 2027-01-01 00:00:01 UTC\n<environment: 0x7f00aa11bb22>\n"
        "took 0.9 s\n   user  system elapsed \n  0.010   0.001   0.011 \nend\n"
    )
    assert rd.text_diff(one, two, rd.DEFAULT_IGNORE) == []
    assert rd.text_diff(one, two, []) != []  # without the patterns they differ
    lines = rd.text_diff(one, one.replace("[1] 2.5", "[1] 2.6"), rd.DEFAULT_IGNORE)
    assert "-[1] 2.5" in lines and "+[1] 2.6" in lines
    # a pattern of one's own
    assert rd.text_diff("seed 41\n", "seed 42\n", [r"seed \d+"]) == []


def test_environment_diff_names_packages_and_versions() -> None:
    def env(py: str, six: str | None, extra: bool) -> dict[str, object]:
        pkgs = [{"name": "numpy", "version": "2.0.0"}]
        if six:
            pkgs.append({"name": "six", "version": six})
        if extra:
            pkgs.append({"name": "attrs", "version": "24.1.0"})
        return {
            "os": {"name": "Debian GNU/Linux 12 (bookworm)"},
            "languages": {"python": {"version": py, "packages": pkgs}},
        }

    assert rd.environment_diff(env("3.11.2", "1.16.0", False), env("3.11.2", "1.16.0", False)) == []
    assert rd.environment_diff(env("3.11.2", "1.16.0", False), env("3.12.1", "1.15.0", True)) == [
        "Python 3.11.2 → 3.12.1",
        "Python package attrs 24.1.0 appeared",
        "Python package six 1.16.0 → 1.15.0",
    ]
    assert rd.environment_diff(env("3.11.2", "1.16.0", False), env("3.11.2", None, False)) == [
        "Python package six 1.16.0 vanished"
    ]


def test_compare_gives_a_verdict_with_causes(images: Path) -> None:
    png = (images / "r1.png").read_bytes()
    expected = rd.Outputs(
        status="ok",
        transcript="[1] 1\n",
        plots=[rd.Plot("image/png", png)],
        files={"out.csv": (images / "a.csv").read_bytes()},
        inputs={"data.csv": "a" * 64, "fit.R": "b" * 64},
        environment={"languages": {"python": {"version": "3.11", "packages": []}}},
    )
    same = rd.Outputs(**{**expected.__dict__})
    same.environment = {
        "languages": {"python": {"version": "3.11", "packages": [{"name": "x", "version": "1"}]}}
    }
    rep = rd.compare(expected, same)
    assert rep.reproduced  # an environment difference alone is reported, not a failure
    assert [d.cause for d in rep.differences] == ["Python package x 1 appeared"]
    assert rep.to_dict()["verdict"] == "reproduced"

    changed = rd.Outputs(
        status="ok",
        transcript="[1] 2\n",
        plots=[rd.Plot("image/png", (images / "r3.png").read_bytes())],
        files={"out.csv": (images / "b.csv").read_bytes()},
        inputs={"data.csv": "c" * 64, "fit.R": "b" * 64},
        environment=expected.environment,
    )
    rep = rd.compare(expected, changed)
    assert not rep.reproduced
    causes = [d.cause for d in rep.differences]
    assert causes[0] == "input file data.csv changed"
    assert causes[1] == "the console output differs (2 line(s))"
    assert causes[2].startswith("plot 1 differs in ")
    assert causes[3].startswith("file out.csv differs")
    text = rep.text()
    assert text.startswith("NOT REPRODUCED") and "line 4, column v: '3' → '30'" in text


def test_runs_with_plain_python_outside_the_package(images: Path, tmp_path: Path) -> None:
    """The bundle's copy: a plain python3 with no rsparkhub installed, from another folder."""
    shutil.copy(ROOT / "src/rsparkhub/reprodiff.py", tmp_path / "reprodiff.py")
    python3 = shutil.which("python3", path="/usr/bin")
    assert python3
    same = subprocess.run(
        [python3, "-I", "reprodiff.py", str(images / "r1.png"), str(images / "r2.png")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert same.returncode == 0 and same.stdout.startswith("REPRODUCED"), same.stderr
    differs = subprocess.run(
        [python3, "-I", "reprodiff.py", str(images / "a.csv"), str(images / "b.csv")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert differs.returncode == 1 and "1 cell(s) changed" in differs.stdout, differs.stderr
