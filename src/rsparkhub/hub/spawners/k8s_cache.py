"""The Kubernetes spawner's in-memory view of its session pods, fed by the two watches
(``k8s_watch``) and read by ``poll``, ``wait``, ``stop`` and ``memory`` — which therefore
never call the API while a session runs.

``PodCache`` keeps each pod's ``PodView``, the results of deleted pods until they are read,
the pods the hub deletes itself, the last Warning event of each pod, and memory use (written
by the spawner's metrics loop). Pod Events become start-up progress lines for the sessions
that asked for them, delivered in order by ``deliver_progress``. Everything here runs on the
event loop (the watch threads hand over through ``call_soon_threadsafe``); it makes no API
calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rsparkhub.hub.spawners.k8s_objects import CONTAINER
from rsparkhub.hub.spawners.k8s_status import (
    Ended,
    PodView,
    deleted_pod_result,
    end_of,
    failed_start,
    progress_line,
    recheck_in,
)

log = logging.getLogger("rsparkhub.k8s")

Progress = Callable[[str], Awaitable[None]]

# Results of deleted pods nobody waits for (orphans) are dropped beyond this many.
_MAX_GONE = 10_000


class PodCache:
    """The session pods as the watches last saw them (``max_age_s``: the pods' maximum age,
    named when one reaches it)."""

    def __init__(self, max_age_s: int) -> None:
        self.max_age_s = max_age_s
        self.pods: dict[str, PodView] = {}
        self.gone: dict[str, Ended] = {}  # deleted pods' final results, until read
        self.deleting: set[str] = set()  # pods the hub itself deletes
        # Pods a stop() waits on: their result outlives forget(), since a pod's last
        # MODIFIED and its DELETED event can arrive together and wait() read it first.
        self.stopping: set[str] = set()
        self.memory: dict[str, int] = {}  # pod -> bytes, from metrics-server
        self.synced = asyncio.Event()  # set by the first full list of the pods
        self._touched: dict[str, float] = {}  # pod -> monotonic time of the last update
        self._changed: dict[str, asyncio.Event] = {}
        self._progress: dict[str, Progress] = {}
        self._progress_q: asyncio.Queue[tuple[Progress, str]] = asyncio.Queue()
        self._seen_events: dict[str, set[tuple[str, int]]] = {}
        self._warning: dict[str, str] = {}  # the last Warning event of a pod

    # ------------------------------------------------------------------ readers
    def changed(self, name: str) -> asyncio.Event:
        """An event set at the next change of pod ``name`` (take it before reading)."""
        ev = self._changed.get(name)
        if ev is None:
            ev = self._changed[name] = asyncio.Event()
        return ev

    def outcome(self, name: str, grace_s: float) -> Ended | None:
        """How the session of pod ``name`` ended, or None while it runs or may still start
        (``grace_s``: how long it may stay unschedulable)."""
        view = self.pods.get(name)
        if view is None:
            gone = self.gone.get(name)
            if gone is not None:
                return Ended(gone.code, gone.reason, False)
            return Ended(None, "the session's pod no longer exists", False)
        if view.ended:
            return end_of(view, self.max_age_s)
        return failed_start(view, grace_s)

    def recheck_in(self, name: str, grace_s: float) -> float:
        """Seconds after which ``outcome`` may change without a watch event."""
        return recheck_in(self.pods.get(name), grace_s)

    def forget(self, name: str) -> None:
        """Drop what is kept of pod ``name`` once its result has been read."""
        for d in (self._progress, self._seen_events, self._warning, self.memory):
            d.pop(name, None)
        if name not in self.stopping:
            self.gone.pop(name, None)
        self.deleting.discard(name)

    # ------------------------------------------------------------------ writers
    def put(self, view: PodView) -> None:
        self.pods[view.name] = view
        self._touched[view.name] = time.monotonic()
        self._notify(view.name)

    def _remove(self, view: PodView, why: str) -> None:
        self.pods.pop(view.name, None)
        self._touched.pop(view.name, None)
        self.gone[view.name] = deleted_pod_result(
            view,
            why,
            by_hub=view.name in self.deleting,
            warning=self._warning.get(view.name),
            max_age_s=self.max_age_s,
        )
        self._seen_events.pop(view.name, None)
        self._warning.pop(view.name, None)
        while len(self.gone) > _MAX_GONE:
            self.gone.pop(next(iter(self.gone)))
        self.memory.pop(view.name, None)
        self._notify(view.name)

    def _notify(self, name: str) -> None:
        ev = self._changed.pop(name, None)
        if ev is not None:
            ev.set()

    # ------------------------------------------------------------------ watch callbacks
    def on_pods_listed(self, items: list[dict[str, Any]], started: float) -> None:
        seen = set()
        for obj in items:
            view = PodView.parse(obj)
            seen.add(view.name)
            self.put(view)
        for name, view in list(self.pods.items()):
            if name not in seen and self._touched.get(name, 0.0) < started:
                self._remove(view, "noticed when the hub's watch listed the pods again")
        self.synced.set()

    def on_pod_event(self, typ: str, obj: dict[str, Any]) -> None:
        view = PodView.parse(obj)
        if not view.name:
            return
        if typ == "DELETED":
            self._remove(view, "")
        else:
            self.put(view)

    def on_events_listed(self, items: list[dict[str, Any]], started: float) -> None:
        for obj in items:
            self.on_event("ADDED", obj)

    def on_event(self, typ: str, obj: dict[str, Any]) -> None:
        if typ == "DELETED":
            return
        inv = obj.get("involvedObject") or {}
        name = inv.get("name") or ""
        if inv.get("kind") != "Pod" or (name not in self.pods and name not in self._progress):
            return
        meta = obj.get("metadata") or {}
        count = int(obj.get("count") or (obj.get("series") or {}).get("count") or 1)
        key = (str(meta.get("uid") or meta.get("name") or ""), count)
        seen = self._seen_events.setdefault(name, set())
        if key in seen:
            return
        seen.add(key)
        reason, message = obj.get("reason") or "", obj.get("message") or ""
        if obj.get("type") == "Warning":
            self._warning[name] = f"{reason}: {' '.join(message.split())[:300]}"
        cb = self._progress.get(name)
        if cb is not None:
            self._progress_q.put_nowait((cb, progress_line(reason, message)))
            if reason == "Started" and CONTAINER in (inv.get("fieldPath") or CONTAINER):
                self._progress.pop(name, None)  # the rest is the agent's business

    # ------------------------------------------------------------------ progress
    def follow_progress(self, name: str, cb: Progress) -> None:
        """Send pod ``name``'s start-up events to ``cb`` until its container has started."""
        self._progress[name] = cb

    def unfollow_progress(self, name: str) -> None:
        self._progress.pop(name, None)

    async def deliver_progress(self) -> None:
        """Progress lines to the sessions' clients, in order, none allowed to block."""
        while True:
            cb, line = await self._progress_q.get()
            try:
                await asyncio.wait_for(cb(line), 10)
            except Exception:  # noqa: BLE001 - a client that went away
                log.debug("progress callback failed", exc_info=True)
