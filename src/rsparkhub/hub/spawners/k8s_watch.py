"""One list-then-watch loop over a kind of Kubernetes object, in its own thread
(``Watcher``): it lists once, watches from the list's ``resourceVersion``, reconnects after a
dropped connection from the last version it saw, and lists again after ``410 Gone``. What it
sees goes to callbacks on the event loop; it keeps no objects itself (``k8s_cache`` does).
Every request is bounded (server timeout + client read timeout).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from rsparkhub.hub.spawners.k8s_client import api_message, read_json

log = logging.getLogger("rsparkhub.k8s")


class Watcher:
    """One list-then-watch loop in a thread: events go to ``on_event`` on the event loop,
    a full list to ``on_list``. Reconnects from the last resourceVersion; lists again after
    410 Gone. Every request is bounded (server timeout + client read timeout)."""

    def __init__(
        self,
        kind: str,
        list_fn: Callable[..., Any],
        namespace: str,
        selectors: dict[str, str],
        loop: asyncio.AbstractEventLoop,
        on_list: Callable[[list[dict[str, Any]], float], None],
        on_event: Callable[[str, dict[str, Any]], None],
        timeout_s: int,
    ) -> None:
        self.kind = kind
        self.list_fn = list_fn
        self.namespace = namespace
        self.selectors = selectors
        self.loop = loop
        self.on_list = on_list
        self.on_event = on_event
        self.timeout_s = timeout_s
        self.rv: str | None = None
        self.stats: Counter[str] = Counter()
        self.connected = False
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._resp: Any = None
        self._thread = threading.Thread(target=self._run, name=f"k8s-watch-{kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            try:
                resp.shutdown()  # unblocks the read in the watch thread
            except Exception:  # noqa: BLE001 - best effort
                pass

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _deliver(self, fn: Callable[..., None], *args: Any) -> bool:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
            return True
        except RuntimeError:  # the loop is closed: the hub is gone
            self._stop.set()
            return False

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                if self.rv is None:
                    self._list()
                self._watch()
                backoff = 0.2
                continue
            except ApiException as exc:
                self.connected = False
                if exc.status == 410:
                    self.stats["gone"] += 1
                    self.rv = None
                    continue
                self.stats["errors"] += 1
                self.last_error = f"{exc.status}: {api_message(exc)}"
            except Exception as exc:  # noqa: BLE001 - dropped connection, timeout, bad JSON
                self.connected = False
                if self._stop.is_set():
                    break
                self.stats["reconnects"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            log.info("watch of %s interrupted (%s); reconnecting", self.kind, self.last_error)
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, 10.0)
        self.connected = False

    def _list(self) -> None:
        started = time.monotonic()
        body = read_json(self.list_fn, self.namespace, **self.selectors, _request_timeout=(10, 120))
        self.stats["lists"] += 1
        self.rv = str((body.get("metadata") or {}).get("resourceVersion") or "") or None
        self._deliver(self.on_list, list(body.get("items") or []), started)

    def _watch(self) -> None:
        resp = self.list_fn(
            self.namespace,
            **self.selectors,
            watch=True,
            resource_version=self.rv,
            allow_watch_bookmarks=True,
            timeout_seconds=self.timeout_s,
            _preload_content=False,
            _request_timeout=(10, self.timeout_s + 30),
        )
        self._resp = resp
        self.stats["watches"] += 1
        self.connected = True
        try:
            for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    return
                if not line:
                    continue
                ev = json.loads(line)
                typ = ev.get("type")
                obj = ev.get("object") or {}
                if typ == "ERROR":
                    if obj.get("code") == 410:
                        self.stats["gone"] += 1
                        self.rv = None  # too old: list again
                        return
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    self.rv = str(rv)
                if typ == "BOOKMARK":
                    continue
                self.stats["events"] += 1
                if not self._deliver(self.on_event, typ, obj):
                    return
        finally:
            self._resp = None
            self.connected = False
            try:
                resp.release_conn()
            except Exception:  # noqa: BLE001
                pass

    def describe(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "resource_version": self.rv,
            **{
                k: self.stats.get(k, 0)
                for k in ("lists", "watches", "events", "reconnects", "gone", "errors")
            },
            "last_error": self.last_error,
        }
