"""What a workspace declares about its packages, normalised, and the cache keys built on it.

Owns: reading ``requirements.txt`` / ``pyproject.toml`` ([project].dependencies) for Python
and ``DESCRIPTION`` (Depends, Imports, LinkingTo) / ``renv.lock`` for R; resolving the R
names against what this machine can install (the base library, tarballs in the
workspace's ``packages/``, a configured mirror); the content-addressed keys. Pure
functions: no file system, no processes (``build.py`` builds, ``__init__`` decides when).

A key is the sha256 of a canonical JSON of everything that decides what a build produces:
the normalised declaration (comments, blank lines and order do not matter), the
interpreter's version and the platform — so the same declaration on the same machine is
built once, for every session and every user.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import tomllib
from dataclasses import dataclass, field

PYTHON_FILES = ("requirements.txt", "pyproject.toml", "uv.lock")
R_FILES = ("DESCRIPTION", "renv.lock")
TARBALL_DIR = "packages"
# R's own packages, always there, never installed from elsewhere
R_BASE = frozenset(
    "R base compiler datasets graphics grDevices grid methods parallel splines stats stats4 "
    "tcltk tools utils".split()
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")
_R_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9.]*$")


class DeclarationError(ValueError):
    """A declaration file that cannot be used; the message names the file and the line."""


def key_of(doc: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def machine() -> str:
    return f"{platform.system()}-{platform.machine()}-{'-'.join(platform.libc_ver())}".lower()


# ---------------------------------------------------------------------------- Python
@dataclass(frozen=True)
class PythonDeclaration:
    source: str  # the file it came from
    requirements: tuple[str, ...]  # normalised, sorted
    # uv.lock: the sha256 of pyproject.toml and uv.lock (the lock decides, byte for byte)
    lock: str | None = None

    def text(self) -> str:
        return "".join(f"{r}\n" for r in self.requirements)

    def key(self, interpreter: str) -> str:
        doc: dict[str, object] = {
            "kind": "python",
            "requirements": list(self.requirements),
            "interpreter": interpreter,
            "machine": machine(),
        }
        if self.lock is not None:
            doc["lock"] = self.lock
        return key_of(doc)


def _requirement(line: str, where: str) -> str:
    """One requirement, whitespace removed and the project name lower-cased."""
    req = line.strip()
    if req.startswith("-") or "://" in req or req.startswith((".", "/")):
        raise DeclarationError(
            f"{where}: '{req}' is not a plain requirement (options, URLs and local paths "
            "are not supported in a declared environment; name a package and its version, "
            "e.g. six==1.16.0)."
        )
    m = _NAME.match(req)
    if m is None:
        raise DeclarationError(f"{where}: '{req}' does not start with a package name.")
    name = re.sub(r"[-_.]+", "-", m.group(0)).lower()
    return name + re.sub(r"\s+", "", req[m.end() :])


def parse_requirements(text: str, source: str = "requirements.txt") -> PythonDeclaration:
    reqs = set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        reqs.add(_requirement(line, f"{source} line {n}"))
    return PythonDeclaration(source, tuple(sorted(reqs)))


def parse_pyproject(text: str) -> PythonDeclaration | None:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DeclarationError(f"pyproject.toml is not valid TOML: {exc}") from exc
    deps = doc.get("project", {}).get("dependencies")
    if deps is None:
        return None
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise DeclarationError("pyproject.toml: [project].dependencies must be a list of strings.")
    reqs = {_requirement(d, "pyproject.toml [project].dependencies") for d in deps}
    return PythonDeclaration("pyproject.toml", tuple(sorted(reqs)))


def python_declaration(files: dict[str, bytes]) -> PythonDeclaration | None:
    """requirements.txt if the workspace has one, else pyproject.toml with its uv.lock
    (the lock's exact versions and hashes), else pyproject.toml's dependencies."""
    if "requirements.txt" in files:
        return parse_requirements(files["requirements.txt"].decode("utf-8", "replace"))
    if "pyproject.toml" not in files:
        return None
    decl = parse_pyproject(files["pyproject.toml"].decode("utf-8", "replace"))
    if decl is None or "uv.lock" not in files:
        return decl
    try:
        tomllib.loads(files["uv.lock"].decode("utf-8", "replace"))
    except tomllib.TOMLDecodeError as exc:
        raise DeclarationError(f"uv.lock is not valid TOML: {exc}") from exc
    lock = hashlib.sha256(files["pyproject.toml"] + b"\0" + files["uv.lock"]).hexdigest()
    return PythonDeclaration("uv.lock", decl.requirements, lock)


# ---------------------------------------------------------------------------- R
_CONSTRAINT = re.compile(r"^(>=|<=|==|>|<)\s*([0-9]+(?:[.-][0-9]+)*)$")


def r_version_tuple(version: str) -> tuple[int, ...]:
    """R's ``package_version`` order: numbers split at ``.`` and ``-``."""
    return tuple(int(x) for x in re.findall(r"[0-9]+", version))


def satisfies(version: str, op: str, wanted: str) -> bool:
    have, want = r_version_tuple(version), r_version_tuple(wanted)
    return {
        ">=": have >= want, ">": have > want, "==": have == want,
        "<=": have <= want, "<": have < want,
    }[op]  # fmt: skip


@dataclass(frozen=True)
class Constraint:
    """``name (op version)`` of a DESCRIPTION field, R's own ``R (>= 4.1)`` included."""

    name: str
    op: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} ({self.op} {self.version})"

    def allows(self, version: str) -> bool:
        return satisfies(version, self.op, self.version)


@dataclass(frozen=True)
class RDeclaration:
    source: str
    packages: tuple[str, ...]  # sorted names, R's own packages left out
    # the versions a renv.lock records (not enforced: see ``version_differences``)
    versions: tuple[tuple[str, str], ...] = ()
    # DESCRIPTION's version constraints (enforced: ``plan_r``, and R's own by the caller)
    constraints: tuple[Constraint, ...] = ()

    def constraint(self, name: str) -> Constraint | None:
        return next((c for c in self.constraints if c.name == name), None)

    def version_differences(self, plan: RPlan) -> list[str]:
        """``glue 1.6.2 → 1.6.1`` for each package whose recorded version is not the one
        the base library gives this session."""
        return [
            f"{name} {want} → {plan.base[name]}"
            for name, want in self.versions
            if name in plan.base and plan.base[name] != want
        ]


def _dcf_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if line[:1].isspace() and last is not None:
            fields[last] += " " + line.strip()
        elif ":" in line:
            last, _, value = line.partition(":")
            last = last.strip()
            fields[last] = value.strip()
    return fields


def parse_description(text: str) -> RDeclaration:
    fields = _dcf_fields(text)
    names = set()
    constraints: dict[tuple[str, str, str], Constraint] = {}
    for f in ("Depends", "Imports", "LinkingTo"):
        for item in fields.get(f, "").split(","):
            name, _, rest = item.partition("(")
            name = name.strip()
            if not name:
                continue
            if not _R_NAME.match(name):
                raise DeclarationError(f"DESCRIPTION {f}: '{name}' is not an R package name.")
            names.add(name)
            if rest:
                m = _CONSTRAINT.match(rest.rstrip().removesuffix(")").strip())
                if not rest.rstrip().endswith(")") or m is None:
                    raise DeclarationError(
                        f"DESCRIPTION {f}: '{item.strip()}' is not a version constraint R "
                        "understands, such as 'dplyr (>= 1.1.0)'."
                    )
                c = Constraint(name, m.group(1), m.group(2))
                constraints[(c.name, c.op, c.version)] = c
    return RDeclaration(
        "DESCRIPTION",
        tuple(sorted(names - R_BASE)),
        constraints=tuple(constraints[k] for k in sorted(constraints)),
    )


def parse_renv_lock(text: str) -> RDeclaration:
    try:
        doc = json.loads(text)
        names = set(doc.get("Packages", {}))
    except (ValueError, AttributeError) as exc:
        raise DeclarationError(f"renv.lock is not a renv lock file: {exc}") from exc
    bad = [n for n in names if not _R_NAME.match(str(n))]
    if bad:
        raise DeclarationError(f"renv.lock: '{bad[0]}' is not an R package name.")
    packages = doc["Packages"]
    versions = tuple(
        sorted(
            (str(n), str(v["Version"]))
            for n, v in packages.items()
            if isinstance(v, dict) and isinstance(v.get("Version"), str) and n not in R_BASE
        )
    )
    return RDeclaration("renv.lock", tuple(sorted(names - R_BASE)), versions)


def r_declaration(files: dict[str, bytes]) -> RDeclaration | None:
    """DESCRIPTION if the workspace has one, else renv.lock (package names; versions are
    what this machine has)."""
    if "DESCRIPTION" in files:
        return parse_description(files["DESCRIPTION"].decode("utf-8", "replace"))
    if "renv.lock" in files:
        return parse_renv_lock(files["renv.lock"].decode("utf-8", "replace"))
    return None


@dataclass
class RPlan:
    """Where each declared R package comes from."""

    base: dict[str, str] = field(default_factory=dict)  # name -> version in the base library
    tarballs: dict[str, str] = field(default_factory=dict)  # name -> workspace path
    from_repos: list[str] = field(default_factory=list)
    # the constraints of packages taken from the mirror: the build checks its versions
    repo_constraints: list[Constraint] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    # constraints nothing here meets: "dplyr (>= 9.0): the base library has 1.1.0"
    unmet: list[str] = field(default_factory=list)

    @property
    def needs_build(self) -> bool:
        return bool(self.tarballs or self.from_repos)

    def key(self, files: dict[str, bytes], r_version: str, repos: str | None) -> str:
        doc: dict[str, object] = {
            "kind": "r",
            "base": self.base,
            "tarballs": {n: hashlib.sha256(files[p]).hexdigest() for n, p in self.tarballs.items()},
            "repos": sorted(self.from_repos),
            "mirror": repos if self.from_repos else None,
            "r": r_version,
            "machine": machine(),
        }
        if self.repo_constraints:  # (absent otherwise: earlier keys stay as they were)
            doc["repo_constraints"] = sorted(map(str, self.repo_constraints))
        return key_of(doc)


def tarball_name(path: str) -> str | None:
    """``packages/foo_1.0.tar.gz`` → ``foo``."""
    m = re.fullmatch(rf"{TARBALL_DIR}/([A-Za-z][A-Za-z0-9.]*)_[^/]+\.tar\.gz", path)
    return m.group(1) if m else None


def tarball_version(path: str) -> str:
    """``packages/foo_1.0-2.tar.gz`` → ``1.0-2`` (R CMD build names them so)."""
    return path.rsplit("_", 1)[-1].removesuffix(".tar.gz")


def plan_r(
    decl: RDeclaration,
    base: dict[str, str],
    paths: list[str],
    repos: str | None,
    r_version: str | None = None,
) -> RPlan:
    """Where each package comes from: a workspace tarball (the highest version that meets
    the DESCRIPTION's constraint), else the base library if its version meets it, else the
    mirror (its current version, which the build checks against the constraint: it fails,
    naming both, when it does not meet it), else nowhere: ``unmet`` when a version is here but not the one asked for (R's own
    against ``r_version``, the sessions' R)."""
    tarballs: dict[str, list[str]] = {}
    for p in paths:
        name = tarball_name(p)
        if name is not None:
            tarballs.setdefault(name, []).append(p)
    for found in tarballs.values():
        found.sort(key=lambda p: r_version_tuple(tarball_version(p)))
    plan = RPlan()
    r_needs = decl.constraint("R")
    if r_needs is not None and r_version is not None and not r_needs.allows(r_version):
        plan.unmet.append(f"{r_needs}: this machine has R {r_version}")
    for name in decl.packages:
        c = decl.constraint(name)
        ok = [p for p in tarballs.get(name, []) if c is None or c.allows(tarball_version(p))]
        if ok:  # a tarball in the workspace is what the author asked for
            plan.tarballs[name] = ok[-1]
        elif name in base and (c is None or c.allows(base[name])):
            plan.base[name] = base[name]
        elif repos:
            plan.from_repos.append(name)
            if c is not None:
                plan.repo_constraints.append(c)
        elif c is not None and (name in base or name in tarballs):
            have = [f"the base library has {base[name]}"] if name in base else []
            have += [f"the workspace has {p}" for p in tarballs.get(name, [])]
            plan.unmet.append(f"{c}: {', '.join(have)}")
        else:
            plan.missing.append(name)
    return plan
