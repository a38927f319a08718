"""The full-text help index of a session: every installed R help page and every Python
docstring, ranked with SQLite FTS5 (BM25), so that help search finds words anywhere in a
page, not only in titles and aliases.

One SQLite database per language in the session's cache directory (the sandbox lets a
session write only its own directory and ``/tmp``). What is indexed is a set of *sources*,
each with a stamp read from the file system:

* R: each installed package directory of the kernel's ``.libPaths()`` (the first library
  that has a package wins, as in R); stamp: the mtimes and sizes of its ``DESCRIPTION``
  and ``Meta/Rd.rds``, which ``R CMD INSTALL`` rewrites.
* Python: each top-level module or package in the kernel's ``sys.path`` entries (the
  working directory excepted), stamp: its mtime; and the interpreter's built-in modules.

Every search lists the sources again (a few hundred ``stat`` calls) and re-reads only
those whose stamp changed — so a package installed while the session runs is found by the
next search — and drops the sources that are gone. The text is read in a child process
(``Rscript r/helptext.R``, ``python -m rsparkhub.agent.helptext``), never in the user's
kernel and without running package code.

This module does not talk to kernels: ``Introspector`` hands it the library paths the
kernel's ``help_search`` reported and merges its hits into the kernel's results (``merge``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsparkhub.agent.helptext import SKIP_TOP

log = logging.getLogger("rsparkhub.agent.helpindex")

R_HELPTEXT = Path(__file__).parent / "r" / "helptext.R"
SCHEMA_VERSION = "1"
# bm25 column weights: source, package (not indexed), topic, aliases, title, keywords, body
WEIGHTS = (0.0, 0.0, 10.0, 6.0, 4.0, 2.0, 1.0)
EXTRACT_LIMIT_S = 300.0
# pages of the packages attached in the session (R's search path: what the user can call
# now) rank as if 1.5 times as relevant
PREFER = 1.5


@dataclass
class Hit:
    topic: str
    package: str
    title: str
    aliases: list[str]
    score: float  # larger is better (minus FTS5's bm25)


@dataclass
class RefreshStats:
    sources: int = 0
    changed: int = 0
    removed: int = 0
    pages: int = 0
    seconds: float = 0.0


def fts5_available() -> bool:
    try:
        con = sqlite3.connect(":memory:")
        con.execute("CREATE VIRTUAL TABLE t USING fts5(a)")
        con.close()
        return True
    except sqlite3.Error:
        return False


# --------------------------------------------------------------------------- sources


def _stamp(*paths: str) -> str:
    parts = []
    for p in paths:
        try:
            st = os.stat(p)
            parts.append(f"{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append("-")
    return "/".join(parts)


def r_sources(libraries: list[str]) -> dict[str, str]:
    """Installed package directory → stamp; the first library with a package wins."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    for lib in libraries:
        try:
            entries = sorted(os.scandir(lib), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.name in seen or e.name.startswith(("00LOCK", ".")):
                continue
            desc = os.path.join(e.path, "DESCRIPTION")
            if not os.path.isfile(desc):
                continue
            seen.add(e.name)
            found[e.path] = _stamp(desc, os.path.join(e.path, "Meta", "Rd.rds"))
    return found


def python_sources(paths: list[str]) -> dict[str, str]:
    """``DIR<TAB>NAME`` → stamp for every public top-level module and package, first
    ``sys.path`` entry wins; ``builtin:`` for the interpreter's built-in modules."""
    found = {"builtin:": sys.version}
    seen: set[str] = set()
    for d in paths:
        if not d or not os.path.isdir(d):
            continue
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            name = e.name[:-3] if e.name.endswith(".py") else e.name
            if name in seen or name in SKIP_TOP or name.startswith("_") or not name.isidentifier():
                continue
            if e.name.endswith(".py") and e.is_file():
                pass
            elif e.is_dir() and os.path.isfile(os.path.join(e.path, "__init__.py")):
                pass
            else:
                continue
            seen.add(name)
            try:
                found[f"{d}\t{name}"] = str(e.stat().st_mtime_ns)
            except OSError:
                continue
    return found


def default_roots(language: str) -> list[str]:
    """Where to look before the kernel has said (its ``help_search`` reports its own)."""
    if language == "python":
        return [p for p in sys.path if p and p != os.getcwd()]
    rscript = shutil.which("Rscript")
    if rscript is None:
        return []
    import subprocess

    try:
        out = subprocess.run(
            [rscript, "--vanilla", "-e", 'cat(.libPaths(), sep = "\\n")'],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in out.splitlines() if line]


# --------------------------------------------------------------------------- the index


def fts_query(query: str) -> str:
    """Every word of the query, as FTS5 phrases (ANDed): no FTS5 syntax gets through."""
    words = re.findall(r"\w+", query.lower())
    return " ".join(f'"{w}"' for w in words)


class _Db:
    """One language's SQLite file (used from one thread at a time, under the index lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.con = sqlite3.connect(path, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)")
        row = self.con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            self.con.executescript(
                "DROP TABLE IF EXISTS sources; DROP TABLE IF EXISTS pages;"
                "CREATE TABLE sources(source TEXT PRIMARY KEY, stamp TEXT NOT NULL);"
                "CREATE VIRTUAL TABLE pages USING fts5(source UNINDEXED, package UNINDEXED,"
                " topic, aliases, title, keywords, body,"
                " tokenize = 'porter unicode61 remove_diacritics 2');"
            )
            self.con.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            self.con.commit()

    def stamps(self) -> dict[str, str]:
        return dict(self.con.execute("SELECT source, stamp FROM sources").fetchall())

    def apply(
        self, current: dict[str, str], changed: list[str], gone: list[str], pages: list[Any]
    ) -> None:
        with self.con:
            for s in [*changed, *gone]:
                self.con.execute("DELETE FROM pages WHERE source = ?", (s,))
                self.con.execute("DELETE FROM sources WHERE source = ?", (s,))
            self.con.executemany(
                "INSERT INTO pages(source, package, topic, aliases, title, keywords, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                pages,
            )
            self.con.executemany(
                "INSERT INTO sources VALUES (?, ?)", [(s, current[s]) for s in changed]
            )

    def search(self, query: str, limit: int, prefer: list[str]) -> list[Hit]:
        match = fts_query(query)
        if not match:
            return []
        weights = ", ".join(str(w) for w in WEIGHTS)
        rows = self.con.execute(
            f"SELECT topic, package, title, aliases, bm25(pages, {weights})"
            f" * (CASE WHEN package IN (SELECT value FROM json_each(?)) THEN {PREFER} ELSE 1 END)"
            " AS rank FROM pages WHERE pages MATCH ? ORDER BY rank LIMIT ?",
            (json.dumps(prefer), match, limit),
        ).fetchall()
        return [Hit(t, p, ti, a.split(), round(-r, 3)) for t, p, ti, a, r in rows]

    def size(self) -> int:
        return sum(
            os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal")) if os.path.exists(p)
        )


@dataclass
class HelpIndex:
    """The session's full-text help index (``directory``: where its files live)."""

    directory: Path
    roots: dict[str, list[str]] = field(default_factory=dict)
    last_refresh: dict[str, RefreshStats] = field(default_factory=dict)
    _dbs: dict[str, _Db] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    available: bool = field(default_factory=fts5_available)

    def _db(self, language: str) -> _Db:
        db = self._dbs.get(language)
        if db is None:
            db = self._dbs[language] = _Db(self.directory / f"help-{language}.sqlite")
        return db

    async def search(
        self,
        language: str,
        query: str,
        limit: int,
        roots: list[str] | None = None,
        prefer: list[str] | None = None,
    ) -> list[Hit] | None:
        """The best ``limit`` pages for ``query`` after bringing the index up to date;
        None when this Python's SQLite has no FTS5 or the index cannot be built."""
        if not self.available:
            return None
        try:
            await self.refresh(language, roots)
            db = self._db(language)
            return await asyncio.to_thread(db.search, query, limit, prefer or [])
        except (OSError, sqlite3.Error) as exc:
            log.warning("help index (%s): %s", language, exc)
            return None

    async def refresh(self, language: str, roots: list[str] | None = None) -> RefreshStats:
        lock = self._locks.setdefault(language, asyncio.Lock())
        async with lock:
            if roots:
                self.roots[language] = list(roots)
            elif language not in self.roots:
                self.roots[language] = await asyncio.to_thread(default_roots, language)
            start = time.perf_counter()
            lister = r_sources if language == "r" else python_sources
            current = await asyncio.to_thread(lister, self.roots[language])
            db = await asyncio.to_thread(self._db, language)
            stored = await asyncio.to_thread(db.stamps)
            changed = [s for s, st in current.items() if stored.get(s) != st]
            gone = [s for s in stored if s not in current]
            pages: list[Any] = []
            if changed:
                pages = await extract(language, changed)
            if changed or gone:
                await asyncio.to_thread(db.apply, current, changed, gone, pages)
            stats = RefreshStats(
                len(current), len(changed), len(gone), len(pages), time.perf_counter() - start
            )
            if changed or gone:
                log.info("help index (%s): %s", language, stats)
            self.last_refresh[language] = stats
            return stats

    def size(self, language: str) -> int:
        return self._db(language).size()

    def close(self) -> None:
        for db in self._dbs.values():
            db.con.close()
        self._dbs.clear()


async def extract(language: str, sources: list[str]) -> list[tuple[str, ...]]:
    """The pages of ``sources``, read by the language's text extractor in a child process."""
    if language == "r":
        rscript = shutil.which("Rscript")
        if rscript is None:
            return []
        cmd = [rscript, "--vanilla", str(R_HELPTEXT)]
    else:
        cmd = [sys.executable, "-m", "rsparkhub.agent.helptext"]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate("\n".join(sources).encode()), EXTRACT_LIMIT_S
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.warning("help index (%s): reading the help text took too long", language)
        return []
    if proc.returncode != 0:
        log.warning("help index (%s): extractor failed: %s", language, err.decode()[-500:])
    return await asyncio.to_thread(_parse_pages, out)


def _parse_pages(out: bytes) -> list[tuple[str, ...]]:
    rows = []
    for line in out.splitlines():
        try:
            p = json.loads(line)
        except ValueError:
            continue
        if not isinstance(p, dict) or "topic" not in p:
            continue
        rows.append(
            tuple(
                str(p.get(k) or "")
                for k in ("source", "package", "topic", "aliases", "title", "keywords", "body")
            )
        )
    return rows


# --------------------------------------------------------------------------- merging


def merge(
    kernel_results: list[dict[str, Any]], hits: list[Hit], limit: int
) -> list[dict[str, Any]]:
    """The kernel's ranked results (topic, alias, title, concept matches) with the index's
    full-text hits: a page found by both gains up to 10 points and ``"text"`` in
    ``matched``; a page only the index found comes with ``matched: ["text"]`` and its
    BM25 score scaled to 0–10, so title and topic matches stay first."""
    out = [dict(r) for r in kernel_results]
    where = {(str(r.get("package") or ""), str(r.get("topic"))): i for i, r in enumerate(out)}
    best = max((h.score for h in hits), default=0.0) or 1.0
    for h in hits:
        bonus = round(10.0 * max(h.score, 0.0) / best, 3)
        keys = [(h.package, h.topic)] + [(h.package, a) for a in h.aliases]
        i = next((where[k] for k in keys if k in where), None)
        if i is not None:
            r = out[i]
            r["score"] = round(float(r.get("score") or 0) + bonus, 3)
            matched = list(r.get("matched") or [])
            if "text" not in matched:
                r["matched"] = [*matched, "text"]
            continue
        where[(h.package, h.topic)] = len(out)
        out.append(
            {
                "topic": h.topic,
                "package": h.package,
                "title": h.title,
                "matched": ["text"],
                "score": bonus,
            }
        )
    out.sort(key=lambda r: (-float(r.get("score") or 0), str(r.get("topic"))))
    return out[:limit]
