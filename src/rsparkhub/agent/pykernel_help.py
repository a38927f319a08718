"""Python help for the Help pane: ``help(x)`` in the kernel (``_HelpHook``) publishes the
topic; ``help_html`` renders a topic with pydoc (imports blocked while it renders, links
rewritten to topics) and ``help_search`` searches an index of loaded and installed modules.
Kernel-side code: the rules of ``pykernel`` apply.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import sys
import time
import types
import warnings
from collections import OrderedDict
from typing import Any

from rsparkhub.agent.pykernel_common import _NOTHING, HELP_MIME, CallError, _clip, _int_arg, _shell

_HELP_OBJECTS: OrderedDict[str, Any] = OrderedDict()


def _help_topic(obj: Any) -> str | None:
    """The dotted name ``help_html`` resolves back to ``obj`` (or to its type)."""
    import inspect

    if isinstance(obj, str):
        topic = obj.strip()
        if not topic:
            return None
        ns = getattr(_shell(), "user_ns", None)
        if _lookup_help(topic, ns if isinstance(ns, dict) else {}) is _NOTHING:
            if _keyword_doc(topic) is None:
                return None  # pydoc's own "No Python documentation found"
        return topic
    if inspect.ismodule(obj):
        return str(obj.__name__)
    if not (
        inspect.isclass(obj)
        or inspect.isroutine(obj)
        or callable(obj)
        and hasattr(obj, "__qualname__")
    ):
        obj = type(obj)
    qn = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not isinstance(qn, str):
        return None
    mod = getattr(obj, "__module__", None)
    if not isinstance(mod, str) or not mod:
        self_ = getattr(obj, "__self__", None)
        mod = getattr(type(self_), "__module__", "builtins") if self_ is not None else "builtins"
    topic = qn if mod == "builtins" else f"{mod}.{qn}"
    try:
        import pydoc

        found = pydoc.locate(topic)
    except Exception:
        found = None
    if found is not obj:
        _HELP_OBJECTS[topic] = obj
        _HELP_OBJECTS.move_to_end(topic)
        while len(_HELP_OBJECTS) > 200:
            _HELP_OBJECTS.popitem(last=False)
    return topic


def _lookup_help(topic: str, ns: dict[str, Any]) -> Any:
    import pydoc

    if topic in _HELP_OBJECTS:
        return _HELP_OBJECTS[topic]
    try:
        obj = pydoc.locate(topic)
    except pydoc.ErrorDuringImport as exc:
        raise CallError(
            "help_not_found",
            f"No help for {topic!r}: importing it failed ({_clip(str(exc.value), 200)}).",
        ) from None
    except Exception:
        obj = None
    if obj is not None:
        return obj
    parts = topic.split(".")
    if parts[0] in ns and all(p.isidentifier() for p in parts):
        obj = ns[parts[0]]
        for p in parts[1:]:
            try:
                obj = getattr(obj, p)
            except Exception:
                return _NOTHING
        return obj
    return _NOTHING


def _lookup_help_static(topic: str, ns: dict[str, Any]) -> Any:
    """``_lookup_help`` for a caller who may not run code (a workspace viewer): nothing is
    imported and no attribute code runs. The topic must start at a module the session has
    already imported, a variable of the session or a builtin; the rest of the dotted name
    is followed with ``inspect.getattr_static`` (no properties, no ``__getattr__``)."""
    import inspect

    if topic in _HELP_OBJECTS:  # documented before by help() in the session's own code
        return _HELP_OBJECTS[topic]
    parts = topic.split(".")
    if not all(p.isidentifier() for p in parts):
        return _NOTHING
    obj: Any
    for i in range(len(parts), 0, -1):
        mod = sys.modules.get(".".join(parts[:i]))
        if isinstance(mod, types.ModuleType):
            obj, rest = mod, parts[i:]
            break
    else:
        if parts[0] in ns:
            obj = ns[parts[0]]
        elif parts[0] in vars(builtins):
            obj = vars(builtins)[parts[0]]
        else:
            return _NOTHING
        rest = parts[1:]
    for p in rest:
        try:
            obj = inspect.getattr_static(obj, p)
        except AttributeError:
            return _NOTHING
        if isinstance(obj, staticmethod | classmethod):
            obj = obj.__func__
    return obj


_PYDOC_NEEDS = ("html", "inspect", "pkgutil", "pydoc", "pydoc_data.topics", "sysconfig")


class _NoImports:
    """A meta path finder that fails every import of the thread that installed it (other
    threads of the session import as usual): rendering a viewer's help page with pydoc
    can then import nothing, whatever the documented object does."""

    def __init__(self) -> None:
        import threading

        self._thread = threading.get_ident()
        self._get_ident = threading.get_ident

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if self._get_ident() == self._thread:
            raise ImportError(f"{fullname} is not imported (help for a viewer imports nothing)")
        return None


@contextlib.contextmanager
def _imports_blocked() -> Any:
    blocker = _NoImports()
    sys.meta_path.insert(0, blocker)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(blocker)


def _keyword_doc(topic: str) -> str | None:
    import pydoc

    helper = pydoc.Helper
    target = helper.keywords.get(topic) or helper.symbols.get(topic) or helper.topics.get(topic)
    if target is None:
        return None
    if isinstance(target, str) and target in helper.topics and topic not in helper.topics:
        target = helper.topics.get(target) or target
    label = target[0] if isinstance(target, tuple) else target
    try:
        import pydoc_data.topics

        text = pydoc_data.topics.topics.get(label)
    except Exception:
        return None
    return text if isinstance(text, str) else None


_HREF = re.compile(r'href="([^"]*)"')
_SCRIPT = re.compile(r"<script\b.*?</script\s*>", re.IGNORECASE | re.DOTALL)


def _rewrite_links(html: str, topic: str, obj: Any) -> str:
    """pydoc's hrefs → ``rsparkhub-help:python//DOTTED.NAME`` (http(s) links kept, file:
    and other links dropped, keeping their text)."""
    import inspect

    if inspect.ismodule(obj):
        base = topic
    else:
        mod = getattr(obj, "__module__", None)
        base = (
            mod
            if isinstance(mod, str) and topic.startswith(mod + ".")
            else topic.rpartition(".")[0]
        )
    last = topic.rpartition(".")[2]

    def target(href: str) -> str | None:
        if href.startswith(("http://", "https://")):
            return href
        m = re.fullmatch(r"([\w.]+)\.html(?:#([\w.\-]*))?", href)
        if m:
            mod, frag = m.group(1), m.group(2) or ""
            name = frag.lstrip("-") if frag else ""
            dotted = f"{mod}.{name}" if name else mod
            if dotted.startswith("builtins."):
                dotted = dotted[len("builtins.") :]
            return dotted
        if re.fullmatch(r"#[\w.\-]+", href):
            frag = href[1:]
            if frag.startswith("-"):
                name = frag[1:]
                if name == topic or name.startswith(topic + "."):
                    return name
                return f"{base}.{name}" if base else name
            head, sep, tail = frag.partition("-")
            if sep:
                if head == topic:
                    return f"{topic}.{tail}"
                if head == last and not inspect.ismodule(obj):
                    return f"{topic}.{tail}"
                return f"{base}.{head}.{tail}" if base else f"{head}.{tail}"
            if head == topic:
                return topic
            return f"{base}.{head}" if base else head
        return None

    def repl(m: re.Match[str]) -> str:
        t = target(m.group(1))
        if t is None:
            return 'data-removed-link=""'
        if t.startswith(("http://", "https://")):
            return f'href="{t}"'
        return f'href="rsparkhub-help:python//{t}"'

    html = _HREF.sub(repl, _SCRIPT.sub("", html))
    return re.sub(r'<a data-removed-link="">(.*?)</a>', r"\1", html, flags=re.DOTALL)


def help_html(args: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    """The help page of ``topic``. ``may_run_code`` false (a workspace viewer asks): only
    modules the session has already imported, builtins and the session's variables are
    looked up (``_lookup_help_static``), and pydoc renders with imports blocked."""
    topic = args.get("topic")
    if not isinstance(topic, str) or not topic.strip():
        raise CallError("invalid_request", "help_html needs a topic.")
    topic = topic.strip()
    if args.get("may_run_code") is True:
        return _help_page(topic, _lookup_help(topic, ns), "")
    for name in _PYDOC_NEEDS:  # what pydoc itself imports while rendering, before the block
        __import__(name)
    with _imports_blocked():
        return _help_page(
            topic,
            _lookup_help_static(topic, ns),
            " (a workspace viewer gets help on the modules the session has imported, "
            "builtins and the session's variables only)",
        )


def _help_page(topic: str, obj: Any, not_found_note: str) -> dict[str, Any]:
    import html as html_mod
    import pydoc

    if obj is _NOTHING:
        text = _keyword_doc(topic)
        if text is None:
            raise CallError(
                "help_not_found", f"No Python documentation found for {topic!r}{not_found_note}."
            )
        body = f'<pre class="pydoc-topic">{html_mod.escape(text)}</pre>'
        return {"topic": topic, "package": "", "title": f"Python: {topic}", "html": body}
    import inspect

    doc_obj = obj
    if not (
        inspect.ismodule(obj)
        or inspect.isclass(obj)
        or inspect.isroutine(obj)
        or inspect.isdatadescriptor(obj)
        or (callable(obj) and pydoc.getdoc(obj))
    ):
        doc_obj = type(obj)
    try:
        body = pydoc.HTMLDoc().document(doc_obj, topic)
    except Exception as exc:
        raise CallError(
            "help_not_found",
            f"No help for {topic!r}: pydoc failed ({type(exc).__name__}: {_clip(str(exc), 200)}).",
        ) from None
    first = (pydoc.getdoc(doc_obj) or "").strip().splitlines()
    title = first[0].strip() if first and first[0].strip() else pydoc.describe(doc_obj)
    return {
        "topic": topic,
        "package": "",
        "title": _clip(title),
        "html": _rewrite_links(body, topic, doc_obj),
    }


class _HelpIndex:
    """topic -> [topic, title, kind, topic_l, title_l, last_l, depth, description_l]"""

    def __init__(self) -> None:
        self.signature: Any = None
        self.entries: dict[str, list[Any]] = {}
        self.by_id: dict[int, str] = {}
        self.modules_done: set[str] = set()
        self.build_s = 0.0

    def add(
        self, topic: str, title: str | None, kind: str, description: str = "", prefer: bool = False
    ) -> None:
        title = (title or "").strip()
        old = self.entries.get(topic)
        if old is not None:
            if title and (prefer or not old[1]):
                old[1] = title
                old[4] = title.lower()
            if description and not old[7]:
                old[7] = description.lower()
            return
        tl = topic.lower()
        last = tl.rpartition(".")[2]
        depth = topic.count(".")
        self.entries[topic] = [
            topic,
            title,
            kind,
            tl,
            title.lower(),
            last,
            depth,
            description.lower(),
        ]


_INDEX: _HelpIndex | None = None


def _path_signature() -> tuple[Any, ...]:
    sig: list[tuple[str, int | None]] = []
    cwd = os.getcwd()
    for p in sys.path:
        if not p or p == "." or p == cwd:
            continue  # the working directory changes all the time; its modules still count
        try:
            sig.append((p, os.stat(p or ".").st_mtime_ns))
        except OSError:
            sig.append((p, None))
    return tuple(sig)


_UNDERLINE = frozenset("=-~*#^+")


def _first_line(doc: Any, name: str = "") -> str:
    """The synopsis of a docstring: its first line that is not a title underline, the
    object's own name or a signature (numpy's ufuncs start with one)."""
    if not isinstance(doc, str):
        return ""
    short = name.rpartition(".")[2]
    for line in doc.strip().splitlines()[:12]:
        text = line.strip().strip("`").strip()
        if not text or set(text) <= _UNDERLINE:
            continue
        if name and (text == name or text == short or text.startswith((short + "(", name + "("))):
            continue
        return text
    return ""


def _description(doc: Any) -> str:
    return " ".join(doc[:400].split()) if isinstance(doc, str) else ""


def _disk_synopsis(finder: Any, name: str) -> str:
    import pydoc

    try:
        spec = finder.find_spec(name)
    except Exception:
        return ""
    origin = getattr(spec, "origin", None) if spec is not None else None
    if isinstance(origin, str) and origin.endswith(".py"):
        try:
            return pydoc.synopsis(origin) or ""
        except Exception:
            return ""
    mod = sys.modules.get(name)
    return _first_line(getattr(mod, "__doc__", None)) if mod is not None else ""


_SKIP_SUBMODULES = frozenset({"tests", "test", "testing", "conftest", "setup", "__main__"})


def _index_disk(index: _HelpIndex) -> None:
    import pkgutil

    for name in sys.builtin_module_names:
        if not name.startswith("_"):
            mod = sys.modules.get(name)
            index.add(name, _first_line(getattr(mod, "__doc__", None)) if mod else "", "module")
    for info in list(pkgutil.iter_modules()):
        name = info.name
        if name.startswith("_") or name in _SKIP_SUBMODULES:
            continue
        index.add(name, _disk_synopsis(info.module_finder, name), "module")
        if not info.ispkg:
            continue
        base = getattr(info.module_finder, "path", None)
        if not isinstance(base, str):
            continue
        try:
            subs = list(pkgutil.iter_modules([os.path.join(base, name)]))
        except Exception:
            continue
        for sub in subs:
            if sub.name.startswith("_") or sub.name in _SKIP_SUBMODULES:
                continue
            index.add(f"{name}.{sub.name}", _disk_synopsis(sub.module_finder, sub.name), "module")


def _index_loaded(index: _HelpIndex) -> None:
    for modname, mod in list(sys.modules.items()):
        if modname in index.modules_done:
            continue
        index.modules_done.add(modname)
        if not isinstance(mod, types.ModuleType) or modname == "__main__":
            continue
        if any(p.startswith("_") for p in modname.split(".")):
            continue
        d = getattr(mod, "__dict__", None)
        if not isinstance(d, dict):
            continue
        doc = d.get("__doc__")
        index.add(modname, _first_line(doc, modname), "module", _description(doc), prefer=True)
        prefix = "" if modname == "builtins" else modname + "."
        for k, v in list(d.items()):
            if type(k) is not str or k.startswith("_"):
                continue
            if isinstance(v, type):
                kind = "class"
            elif (
                isinstance(v, types.FunctionType | types.BuiltinFunctionType)
                or type(v).__name__ == "ufunc"
            ):
                kind = "function"
            else:
                continue
            topic = prefix + k
            key = id(v)
            prev = index.by_id.get(key)
            if prev is not None:
                if (prev.count("."), len(prev)) <= (topic.count("."), len(topic)):
                    continue
                index.entries.pop(prev, None)
            index.by_id[key] = topic
            try:
                doc = v.__doc__
            except Exception:
                doc = None
            index.add(topic, _first_line(doc, k), kind, _description(doc))


def _help_index() -> _HelpIndex:
    global _INDEX
    sig = _path_signature()
    index = _INDEX
    start = time.perf_counter()
    if index is None or index.signature != sig:
        index = _HelpIndex()
        index.signature = sig
        _index_disk(index)
        _INDEX = index
    _index_loaded(index)
    index.build_s = time.perf_counter() - start
    return index


def help_search(args: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    query = args.get("query")
    if not isinstance(query, str) or not query.strip():
        raise CallError("invalid_request", "help_search needs a query.")
    limit = _int_arg(args, "limit", 50, 1, 500)
    q = query.strip().lower()
    words = q.split()
    q_dotted = ".".join(words)
    index = _help_index()
    results = []
    for topic, title, _kind, tl, til, last, depth, desc in index.entries.values():
        if tl == q or last == q or tl == q_dotted or last == "_".join(words):
            score, matched = 100.0, ["topic"]
        elif all(w in tl for w in words):
            score, matched = 50.0, ["topic"] + (["title"] if all(w in til for w in words) else [])
        elif all(w in til for w in words):
            score, matched = 20.0, ["title"]
        elif all(w in tl or w in til for w in words):
            score, matched = 10.0, ["topic", "title"]
        elif desc and all(w in tl or w in til or w in desc for w in words):
            score, matched = 5.0, ["description"]
        else:
            continue
        score -= min(depth, 9) * 0.5
        results.append((score, topic, title, matched))
    results.sort(key=lambda r: (-r[0], len(r[1]), r[1]))
    cwd = os.getcwd()
    return {
        "query": query,
        "results": [
            {"topic": t, "package": "", "title": _clip(title), "matched": m, "score": s}
            for s, t, title, m in results[:limit]
        ],
        # where the agent's full-text index (agent/helpindex.py) looks for modules
        "roots": [p for p in sys.path if p and p != "." and p != cwd and os.path.isdir(p)],
    }


# ----------------------------------------------------------------------------- help()


class _HelpHook:
    """``builtins.help`` in the kernel: ``help(x)`` points the Help pane at x."""

    _rsparkhub_help = True

    def __init__(self, orig: Any) -> None:
        self._orig = orig

    def __repr__(self) -> str:
        return repr(self._orig)

    def __call__(self, *args: Any, **kwds: Any) -> Any:
        if len(args) != 1 or kwds:
            return self._orig(*args, **kwds)
        if args[0] is self:
            return self._orig(self._orig)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                topic = _help_topic(args[0])
            if topic is None:
                return self._orig(*args)
            from IPython.display import publish_display_data

            publish_display_data(
                data={
                    "text/plain": f"Help on {topic}: see the Help pane.",
                    HELP_MIME: {"topic": topic, "package": "", "language": "python"},
                }
            )
        except Exception:
            return self._orig(*args)
        return None
