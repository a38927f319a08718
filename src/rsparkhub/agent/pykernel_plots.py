"""Plots at another size, and the import hooks that make them possible: matplotlib's inline
backend is patched (when it is imported, through ``_InlineFinder``) to keep the last
``KEEP_PLOTS`` figures, keyed in each plot's ``display_data``; ``plot_render`` draws one again
at the requested size and format. The same hook caps pyspark's Spark Connect retry backoff.
Kernel-side code: the rules of ``pykernel`` apply.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections import OrderedDict
from typing import Any

from rsparkhub.agent.pykernel_common import KEEP_PLOTS, PLOT_MIME, CallError

_PLOTS: OrderedDict[str, Any] = OrderedDict()
_PLOT_COUNTER = [0]


def _remember_figure(fig: Any) -> str:
    _PLOT_COUNTER[0] += 1
    key = f"f{_PLOT_COUNTER[0]}"
    _PLOTS[key] = fig
    while len(_PLOTS) > KEEP_PLOTS:
        _PLOTS.popitem(last=False)
    return key


def _patch_inline(mod: Any) -> None:
    """Wrap ``matplotlib_inline.backend_inline._fetch_figure_metadata`` (looked up as a
    global by ``show``/``flush_figures``/``figure.show``) so each displayed figure is kept
    and its display_data carries ``{PLOT_MIME: {"key": "fN"}}`` metadata."""
    d = getattr(mod, "__dict__", {})
    orig = d.get("_fetch_figure_metadata")
    if orig is None or getattr(orig, "_rsparkhub", False):
        return

    def _fetch_figure_metadata(fig: Any) -> Any:
        md = orig(fig)
        try:
            key = _remember_figure(fig)
            md = dict(md or {})
            md[PLOT_MIME] = {"key": key}
        except Exception:
            pass
        return md

    _fetch_figure_metadata._rsparkhub = True  # type: ignore[attr-defined]
    _fetch_figure_metadata.__wrapped__ = orig  # type: ignore[attr-defined]
    mod._fetch_figure_metadata = _fetch_figure_metadata


_INLINE = "matplotlib_inline.backend_inline"
_SPARK_RETRIES = "pyspark.sql.connect.client.retries"
_SPARK_CORE = "pyspark.sql.connect.client.core"
# pyspark's DefaultPolicy.__init__ defaults (4.x): max_retries, backoff_multiplier,
# initial_backoff (ms), max_backoff (ms), jitter, min_jitter_threshold, …
_SPARK_RETRY_DEFAULTS = (15, 4.0, 50, 60000)
SPARK_RETRY_MAX_MS = 250  # a refused connection is retried at most this long after
# gRPC's own reconnect backoff of a channel (1 s growing 1.6× by default) must not hold a
# retry back longer than that. Also used by r/spark.R's Python half.
SPARK_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", SPARK_RETRY_MAX_MS),
)


def _patch_spark_retries(mod: Any) -> None:
    """A refused connection (the hub's embedded Spark server still starting, or restarting)
    is retried by pyspark with a backoff growing 4× up to 60 s, so a server that comes up
    just after the 17 s retry answers the user's first query only at the 68 s one. Retry at
    most every 250 ms instead, for the same total patience (~10 minutes): a server that
    comes up is used at once. Changes nothing unless the defaults are the ones this was
    written for."""
    init = mod.DefaultPolicy.__init__
    defaults = init.__defaults__
    if not defaults or tuple(defaults[:4]) != _SPARK_RETRY_DEFAULTS:
        return
    init.__defaults__ = (2400, 2.0, 50, SPARK_RETRY_MAX_MS, *defaults[4:])


def spark_channel_options(mod: Any) -> None:
    """gRPC's reconnect backoff capped at ``SPARK_RETRY_MAX_MS`` on every Spark Connect
    channel (``ChannelBuilder.GRPC_DEFAULT_OPTIONS``); options already there are kept."""
    options = mod.ChannelBuilder.GRPC_DEFAULT_OPTIONS
    have = {key for key, _ in options}
    options.extend(opt for opt in SPARK_CHANNEL_OPTIONS if opt[0] not in have)


_PATCHES: dict[str, Any] = {
    _INLINE: _patch_inline,
    _SPARK_RETRIES: _patch_spark_retries,
    _SPARK_CORE: spark_channel_options,
}


class _PatchingLoader:
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        with contextlib.suppress(Exception):
            _PATCHES[module.__name__](module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _InlineFinder:
    """A meta path finder that patches a module of ``_PATCHES`` right after it is imported:
    the inline backend (matplotlib may be imported, and a figure shown, in the very cell
    that loads it) and Spark Connect's retry policy."""

    _rsparkhub_finder = True

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _PATCHES:
            return None
        for finder in sys.meta_path:
            if finder is self or getattr(finder, "_rsparkhub_finder", False):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            try:
                spec = find(fullname, path, target)
            except Exception:
                continue
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None

    def invalidate_caches(self) -> None:
        pass


def plot_render(args: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    key = args.get("key")
    fig = _PLOTS.get(key) if isinstance(key, str) else None
    if fig is None:
        raise CallError(
            "plot_not_found",
            f"Plot {key!r} is no longer available (the last {KEEP_PLOTS} are kept).",
        )
    fmt = args.get("format", "png")
    mimes = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
    if fmt not in mimes:
        raise CallError("invalid_request", "format must be png, svg or pdf.")
    width = args.get("width", 800)
    height = args.get("height", 600)
    res = args.get("res", 96)
    out = args.get("out")
    for name, v in (("width", width), ("height", height), ("res", res)):
        if not isinstance(v, int | float) or isinstance(v, bool) or not 0 < v <= 20000:
            raise CallError("invalid_request", f"{name} must be a positive number.")
    if not isinstance(out, str) or not os.path.isabs(out):
        raise CallError("invalid_request", "out must be an absolute path.")
    import matplotlib

    w_in = math.nextafter(width / res, math.inf)
    h_in = math.nextafter(height / res, math.inf)
    old_size = fig.get_size_inches().copy()
    try:
        fig.set_size_inches(w_in, h_in, forward=False)
        with matplotlib.rc_context({"savefig.bbox": "standard"}):
            fig.savefig(out, format=fmt, dpi=res)  # sets and restores fig.dpi itself
    finally:
        fig.set_size_inches(old_size, forward=False)
    return {"path": out, "mime": mimes[fmt]}
