"""The class-data archive's unsigned copies of Spark's signed jars (hub/spark_embedded_archive.py),
on the real pyspark install and the real JVM: exactly the signed jars are copied, with every
entry but the signatures unchanged, read-only, and made once; and the reason they exist —
HotSpot archives the classes of the copy and none of the signed original's. That a user's
server maps the archive on that class path: tests/test_spark.py."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from rsparkhub.hub.spark_embedded_archive import (
    SIGNATURE,
    is_signed,
    prune_other_archives,
    unsigned_copies,
)
from rsparkhub.hub.spark_embedded_process import spark_home

JARS = spark_home() / "jars"
JANINO = ("janino-", "commons-compiler-")  # Spark's code generator: signed upstream


def _janino(directory: Path) -> list[Path]:
    return sorted(j for j in directory.glob("*.jar") if j.name.startswith(JANINO))


def test_signed_jars_are_copied_without_their_signatures(tmp_path: Path) -> None:
    signed = {j.name for j in JARS.glob("*.jar") if is_signed(j)}
    assert {j.name for j in _janino(JARS)} <= signed  # what this is for is in the install
    where = tmp_path / "spark-x.jars"
    copies = unsigned_copies(JARS, where)
    assert [c.name for c in copies] == sorted(signed)
    for copy in copies:
        assert not is_signed(copy)
        assert stat.S_IMODE(copy.stat().st_mode) == 0o444
        with zipfile.ZipFile(JARS / copy.name) as orig, zipfile.ZipFile(copy) as new:
            kept = [i.filename for i in orig.infolist() if not SIGNATURE.match(i.filename)]
            assert len(kept) < len(orig.infolist())
            assert [i.filename for i in new.infolist()] == kept
            for name in kept:
                assert new.read(name) == orig.read(name), name
    assert stat.S_IMODE(where.stat().st_mode) == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["spark-x.jars"]  # no staging left


def test_copies_are_made_once(tmp_path: Path) -> None:
    """An archive names its jars' sizes and times: copies in place are never remade."""
    where = tmp_path / "spark-x.jars"
    first = unsigned_copies(JARS, where)
    times = [c.stat().st_mtime_ns for c in first]
    assert unsigned_copies(JARS, where) == first
    assert [c.stat().st_mtime_ns for c in first] == times


def test_a_directory_without_signed_jars_gives_no_copies(tmp_path: Path) -> None:
    jars = tmp_path / "jars"
    jars.mkdir()
    for j in JARS.glob("*.jar"):
        if not is_signed(j):
            shutil.copy(j, jars)
            break
    assert unsigned_copies(jars, tmp_path / "none.jars") == ()
    assert (tmp_path / "none.jars").is_dir()


@pytest.mark.parametrize("unsigned", [True, False], ids=["unsigned copy", "signed original"])
def test_the_jvm_archives_classes_of_the_copy_only(tmp_path: Path, unsigned: bool) -> None:
    """Janino's command-line compiler loads a few hundred of its classes: after a run with
    ``-XX:ArchiveClassesAtExit``, a second run maps them from the archive when the jars are
    the unsigned copies, and reads them from the jar when they are the signed originals."""
    jars = unsigned_copies(JARS, tmp_path / "copies") if unsigned else ()
    cp = ":".join(str(j) for j in (_janino(tmp_path / "copies") if unsigned else _janino(JARS)))
    assert cp.count(":") == 1, cp
    archive = tmp_path / "janino.jsa"
    main = ["-cp", cp, "org.codehaus.janino.Compiler", "-help"]
    env = {**os.environ, "JAVA_TOOL_OPTIONS": ""}
    subprocess.run(
        ["java", f"-XX:ArchiveClassesAtExit={archive}", "-Xlog:cds=off", *main],
        capture_output=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert archive.is_file()
    out = subprocess.run(
        ["java", f"-XX:SharedArchiveFile={archive}", "-Xlog:class+load=info", *main],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    ).stdout  # fmt: skip
    line = next(x for x in out.splitlines() if "org.codehaus.janino.Compiler source:" in x)
    assert ("shared objects file" in line) is unsigned, line
    if unsigned:
        assert jars and all(str(j.parent) in cp for j in jars)


def test_jars_installed_again_make_a_new_key(tmp_path: Path) -> None:
    """The JVM maps an archive only if each class path jar has the size and time it had
    when the archive was made: the same pyspark installed again at the same path (a new
    venv, a forced reinstall) must not find the old archive (CI found a fresh clone at a
    path used before mapping nothing, silently)."""
    from rsparkhub.hub.spark_embedded_archive import _jars_fingerprint

    jars = tmp_path / "jars"
    jars.mkdir()
    for name in ("a.jar", "b.jar"):
        (jars / name).write_bytes(b"PK\x05\x06" + bytes(18))
    first = _jars_fingerprint(jars)
    assert _jars_fingerprint(jars) == first  # stable
    os.utime(jars / "b.jar", ns=(1, 1))  # reinstalled: same bytes, another time
    assert _jars_fingerprint(jars) != first
    again = _jars_fingerprint(jars)
    (jars / "c.jar").write_bytes(b"PK\x05\x06" + bytes(18))
    assert _jars_fingerprint(jars) != again


def test_a_new_archive_removes_those_of_earlier_installs(tmp_path: Path) -> None:
    """Archives of earlier installs (and their read-only copies) go once a new one is made;
    the new one, its copies and whatever else is in the directory stay."""
    for key in ("old1", "old2", "new"):
        archive = tmp_path / f"spark-{key}.jsa"
        archive.write_bytes(b"x" * 10)
        archive.chmod(0o444)
        copies = tmp_path / f"spark-{key}.jars"
        copies.mkdir()
        (copies / "janino.jar").write_bytes(b"j")
        (copies / "janino.jar").chmod(0o444)
        copies.chmod(0o555)
    (tmp_path / "train.log").write_text("kept")
    removed = prune_other_archives(tmp_path, tmp_path / "spark-new.jsa")
    assert removed == ["spark-old1.jsa", "spark-old2.jsa", "spark-old1.jars", "spark-old2.jars"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "spark-new.jars",
        "spark-new.jsa",
        "train.log",
    ]
    assert (tmp_path / "spark-new.jars" / "janino.jar").read_bytes() == b"j"
    assert prune_other_archives(tmp_path, tmp_path / "spark-new.jsa") == []
