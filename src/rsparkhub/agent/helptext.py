"""The text of Python documentation, for the agent's full-text help index
(``agent/helpindex.py``), read from source files without importing them.

    python -m rsparkhub.agent.helptext < sources

reads one source a line on stdin — ``DIR<TAB>NAME`` (the module ``NAME.py`` or the package
``NAME/`` in the ``sys.path`` entry ``DIR``) or ``builtin:`` (the interpreter's built-in
modules, ``builtins`` among them) — and writes one JSON object per documented module,
class, function and method on stdout: ``{"source", "package": "", "topic", "aliases",
"title", "keywords", "body"}``; ``topic`` is the dotted name ``help_html`` opens. Source
files are parsed with ``ast`` (docstrings only): nothing of the documented code runs, so
the index can be built for a workspace viewer too. Runs in its own process, never in the
user's kernel.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

MAX_FILES_PER_SOURCE = 150  # a huge package is indexed by its first files (breadth first)
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 3  # package/sub/subsub/module.py
MAX_DOC_CHARS = 20_000
SKIP_DIRS = frozenset({"tests", "test", "testing", "__pycache__", "examples", "benchmarks"})
# top-level names not worth indexing: Python's own test suite and demo/tool packages
SKIP_TOP = SKIP_DIRS | {"idlelib", "turtledemo", "lib2to3", "antigravity", "this"}
_UNDERLINE = frozenset("=-~*#^+")


def title_of(doc: str, name: str) -> str:
    """A docstring's first line that is not an underline, the name or a signature."""
    short = name.rpartition(".")[2]
    for line in doc.strip().splitlines()[:12]:
        text = line.strip().strip("`").strip()
        if not text or set(text) <= _UNDERLINE:
            continue
        if text in (name, short) or text.startswith((short + "(", name + "(")):
            continue
        return text[:200]
    return ""


def page(source: str, topic: str, doc: str | None) -> dict[str, Any] | None:
    if not doc or not doc.strip():
        return None
    doc = doc[:MAX_DOC_CHARS]
    return {
        "source": source,
        "package": "",
        "topic": topic,
        "aliases": topic.rpartition(".")[2],
        "title": title_of(doc, topic),
        "keywords": "",
        "body": " ".join(doc.split()),
    }


def module_pages(source: str, modname: str, path: str) -> Iterator[dict[str, Any]]:
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            return
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return
    p = page(source, modname, ast.get_docstring(tree))
    if p:
        yield p
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if node.name.startswith("_"):
            continue
        topic = f"{modname}.{node.name}"
        p = page(source, topic, ast.get_docstring(node))
        if p:
            yield p
        if isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef) and not (
                    sub.name.startswith("_")
                ):
                    p = page(source, f"{topic}.{sub.name}", ast.get_docstring(sub))
                    if p:
                        yield p


def package_files(root: str, name: str) -> Iterator[tuple[str, str]]:
    """(dotted module name, file) of a module or package, breadth first, bounded."""
    single = os.path.join(root, name + ".py")
    if os.path.isfile(single):
        yield name, single
        return
    queue = [(name, os.path.join(root, name), 0)]
    count = 0
    while queue:
        modname, folder, depth = queue.pop(0)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        init = os.path.join(folder, "__init__.py")
        if os.path.isfile(init):
            yield modname, init
            count += 1
        for e in entries:
            if count >= MAX_FILES_PER_SOURCE:
                return
            if e.name.startswith(("_", ".")) or e.name in SKIP_DIRS:
                continue
            if e.is_file() and e.name.endswith(".py") and e.name[:-3].isidentifier():
                yield f"{modname}.{e.name[:-3]}", e.path
                count += 1
            elif e.is_dir() and e.name.isidentifier() and depth + 1 < MAX_DEPTH:
                if os.path.isfile(os.path.join(e.path, "__init__.py")):
                    queue.append((f"{modname}.{e.name}", e.path, depth + 1))


def builtin_pages() -> Iterator[dict[str, Any]]:
    import importlib

    for modname in sorted(sys.builtin_module_names):
        if modname.startswith("_"):
            continue
        try:
            mod = importlib.import_module(modname)  # built into the interpreter: no code runs
        except Exception:
            continue
        prefix = "" if modname == "builtins" else modname + "."
        p = page("builtin:", modname, getattr(mod, "__doc__", None))
        if p:
            yield p
        for k, v in sorted(vars(mod).items()):
            if k.startswith("_") or not callable(v):
                continue
            doc = getattr(v, "__doc__", None)
            p = page("builtin:", prefix + k, doc if isinstance(doc, str) else None)
            if p:
                yield p


def pages_of(source: str) -> Iterator[dict[str, Any]]:
    if source == "builtin:":
        yield from builtin_pages()
        return
    root, _, name = source.partition("\t")
    for modname, path in package_files(root, name):
        yield from module_pages(source, modname, path)


def main() -> None:
    out = sys.stdout
    for line in sys.stdin.read().splitlines():
        if not line:
            continue
        for p in pages_of(line):
            out.write(json.dumps(p) + "\n")


if __name__ == "__main__":
    main()
