"""What a declaration means and which cache key it gets (hub/environments/declarations.py):
comments, order and spacing do not change a key, a version or the interpreter does;
what cannot go into a shared environment is refused with the file and line; R packages
resolve to a workspace tarball first, then the base library, then a mirror."""

from __future__ import annotations

import pytest

from rsparkhub.hub.environments import declarations as D


def test_the_same_requirements_written_differently_share_a_key() -> None:
    a = D.parse_requirements("six==1.16.0\nattrs>=23  # why\n\n")
    b = D.parse_requirements("# pinned\nAttrs >= 23\nsix == 1.16.0\nsix==1.16.0\n")
    assert a.requirements == b.requirements == ("attrs>=23", "six==1.16.0")
    assert a.key("CPython 3.11.7") == b.key("CPython 3.11.7")
    assert a.key("CPython 3.11.7") != a.key("CPython 3.12.1")
    assert a.key("CPython 3.11.7") != D.parse_requirements("six==1.17.0\nattrs>=23\n").key(
        "CPython 3.11.7"
    )


@pytest.mark.parametrize(
    "line", ["-r other.txt", "-e .", "--index-url https://x", "https://x/y.whl", "./pkg", "/abs"]
)
def test_options_urls_and_paths_are_refused_with_their_line(line: str) -> None:
    with pytest.raises(D.DeclarationError, match="requirements.txt line 2"):
        D.parse_requirements(f"six\n{line}\n")


def test_which_python_file_counts() -> None:
    pyproject = b'[project]\nname = "a"\ndependencies = ["Six==1.16.0"]\n'
    assert D.python_declaration({}) is None
    decl = D.python_declaration({"pyproject.toml": pyproject})
    assert decl is not None and decl.requirements == ("six==1.16.0",) and decl.lock is None
    locked = D.python_declaration({"pyproject.toml": pyproject, "uv.lock": b"version = 1\n"})
    assert locked is not None and locked.source == "uv.lock" and locked.lock
    other = D.python_declaration({"pyproject.toml": pyproject, "uv.lock": b"version = 1\n\n"})
    assert other is not None and other.key("x") != locked.key("x")  # the lock, byte for byte
    both = D.python_declaration({"requirements.txt": b"tomli\n", "pyproject.toml": pyproject})
    assert both is not None and both.source == "requirements.txt"
    with pytest.raises(D.DeclarationError, match="uv.lock is not valid TOML"):
        D.python_declaration({"pyproject.toml": pyproject, "uv.lock": b"[[["})


def test_description_and_renv_lock_name_packages() -> None:
    desc = "Package: a\nDepends: R (>= 4.1), stats\nImports: jsonlite (>= 1.0),\n  tinypkg\n"
    assert D.parse_description(desc).packages == ("jsonlite", "tinypkg")
    lock = '{"R": {"Version": "4.2.2"}, "Packages": {"glue": {"Version": "1.6.2"}, "utils": {}}}'
    assert D.parse_renv_lock(lock).packages == ("glue",)
    with pytest.raises(D.DeclarationError, match="not an R package name"):
        D.parse_description("Imports: ../evil\n")


def test_r_packages_resolve_tarball_then_base_then_mirror() -> None:
    decl = D.parse_description("Imports: jsonlite, tinypkg, glue, nowhere\n")
    paths = ["packages/tinypkg_0.1.0.tar.gz", "packages/tinypkg_0.2.0.tar.gz", "x.R"]
    base = {"jsonlite": "1.8.4", "tinypkg": "9.9"}
    plan = D.plan_r(decl, base, paths, None)
    assert plan.tarballs == {"tinypkg": "packages/tinypkg_0.2.0.tar.gz"}
    assert plan.base == {"jsonlite": "1.8.4"} and plan.missing == ["glue", "nowhere"]
    mirrored = D.plan_r(decl, base, paths, "https://cran.example.org")
    assert mirrored.from_repos == ["glue", "nowhere"] and not mirrored.missing
    files = {p: p.encode() for p in paths}
    assert plan.key(files, "4.2", None) != mirrored.key(files, "4.2", "https://cran.example.org")
    assert D.tarball_name("packages/sub/x_1.tar.gz") is None


def test_renv_lock_versions_that_differ_from_the_machine_are_named() -> None:
    lock = (
        '{"Packages": {"jsonlite": {"Package": "jsonlite", "Version": "0.0.1"},'
        ' "cli": {"Version": "3.6.0"}, "stats": {"Version": "4.2.2"}}}'
    )
    decl = D.parse_renv_lock(lock)
    plan = D.plan_r(decl, {"jsonlite": "1.8.4", "cli": "3.6.0"}, [], None)
    assert decl.version_differences(plan) == ["jsonlite 0.0.1 → 1.8.4"]


def test_description_version_constraints_choose_and_refuse() -> None:
    """``name (op version)``: a tarball that meets it wins, then the base library if its
    version does; a version that is here but does not meet it is named (never silently
    used); with a mirror, the package comes from there."""
    desc = (
        "Depends: R (>= 4.1)\nImports: jsonlite (>= 1.8.0), tinypkg (< 0.2),\n"
        "    glue (>= 9.0), cli (== 3.6.0)\n"
    )
    decl = D.parse_description(desc)
    assert [str(c) for c in decl.constraints] == [
        "R (>= 4.1)", "cli (== 3.6.0)", "glue (>= 9.0)", "jsonlite (>= 1.8.0)", "tinypkg (< 0.2)",
    ]  # fmt: skip
    r = decl.constraint("R")
    assert r is not None and r.allows("4.2.2") and not r.allows("4.0.5")
    paths = ["packages/tinypkg_0.10.0.tar.gz", "packages/tinypkg_0.1.9.tar.gz"]
    base = {"jsonlite": "1.8.4", "glue": "1.6.2", "cli": "3.6.0", "tinypkg": "0.0.1"}
    plan = D.plan_r(decl, base, paths, None)
    # 0.10.0 > 0.1.9 (numbers, not text), but only 0.1.9 meets "< 0.2"
    assert plan.tarballs == {"tinypkg": "packages/tinypkg_0.1.9.tar.gz"}
    assert plan.base == {"jsonlite": "1.8.4", "cli": "3.6.0"}
    assert plan.unmet == ["glue (>= 9.0): the base library has 1.6.2"] and not plan.missing
    mirrored = D.plan_r(decl, base, paths, "https://cran.example.org")
    assert mirrored.from_repos == ["glue"] and not mirrored.unmet
    assert D.satisfies("1.0-2", ">", "1.0.1") and not D.satisfies("1.10", "<", "1.9")
    for bad in ("Imports: dplyr (~> 1.0)\n", "Imports: dplyr (>= )\n", "Imports: dplyr (>= 1.0\n"):
        with pytest.raises(D.DeclarationError, match="not a version constraint"):
            D.parse_description(bad)
