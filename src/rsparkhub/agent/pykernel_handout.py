"""Kernel side of a pooled Python kernel's hand-out (agent/handout.py): the process
environment of the workspace's session, and what Python derives from it at start.

Runs inside the kernel, once, before any of the user's code."""

from __future__ import annotations

import importlib
import json
import os
import sys


def _stdlib_index() -> int:
    """Where PYTHONPATH's entries sit in ``sys.path``: before the standard library's."""
    base = os.path.realpath(sys.base_prefix)
    for i, p in enumerate(sys.path):
        if p and os.path.realpath(p).startswith(base + os.sep) and "site-packages" not in p:
            return i
    return len(sys.path)


class Shadowed(RuntimeError):
    """A module this kernel has imported comes from elsewhere for the workspace: only a
    new kernel behaves as a cold one would."""


def _shadowed(front: list[str]) -> list[str]:
    """Top-level modules already imported that the new path entries also provide (a
    cold kernel, with them on its path from the start, would have imported those)."""
    from importlib.machinery import PathFinder

    names = {m.partition(".")[0] for m in list(sys.modules)}
    return sorted(
        n for n in names if not n.startswith("_") and PathFinder.find_spec(n, front) is not None
    )


def reset(payload: str) -> None:
    data = json.loads(payload)
    for name in data.get("removed", []):
        os.environ.pop(name, None)
    os.environ.update(data.get("changed", {}))
    front = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for p in front:
        while p in sys.path:
            sys.path.remove(p)
    new = [p for p in front if os.path.isdir(p)]
    if new and (hit := _shadowed(new)):
        raise Shadowed(f"imported before the hand-out, also in {new}: {', '.join(hit)}")
    at = _stdlib_index()
    sys.path[at:at] = front
    importlib.invalidate_caches()
    from rsparkhub.agent.pykernel_spark import preload_spark

    preload_spark()  # a Spark workspace's kernel imports pyspark in the background
