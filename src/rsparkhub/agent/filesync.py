"""Files between the session's working directory and the hub, in both directions.

``FileSync`` owns the file half of the agent link: what code writes goes to the hub and is
acknowledged, what the hub writes comes in, and after a re-dial both sides are brought
together from the welcome's manifest. It does not dial and touches the event stream only
to emit ``FileRefusedEvent``; the link hands it a sender (``connected``) and takes it back
(``disconnected``).

Code → hub: ``scan_and_send`` (after each execution and every few seconds while idle)
compares the tree with what the hub holds (``Workdir.known``) plus the changes in flight.
Each change goes out as ``FileFromAgent``/``FileDeletedByAgent`` with the next ``fseq``
(1, 2, 3 … per agent process; a ``FileFromAgent`` names in ``base_sha256`` the content it
overwrote — what the hub last put or acknowledged, or the change still in flight — so that
the hub merges it into a shared document against what the code saw) and stays in flight until its ``FileAck``: ok → committed as
known; refused → committed as known-but-refused (not sent again until code changes the
file again) and a ``FileRefusedEvent`` goes into the outbox. A change in flight is not sent
again unless code changes the file once more (then the newer content goes out under a new
fseq). When the link drops, whatever is in flight becomes unsent again.

Hub → workdir: ``put``/``delete`` apply ``FilePut``/``FileDelete`` at once; a change of the
same path still in flight is superseded (its ack no longer commits it). A file that code
changed and no scan has sent yet (a long execution is scanned only at its end) is not
overwritten by a ``FilePut``: its change is sent instead (against what it overwrote), as a
re-dial would — the hub merges it into an open document, else code's version wins and the
hub's stays in the file's history — and the hub's result comes back as a later put.

Re-dial: ``connected(send, manifest)`` applies ``plan_resync`` (a pure function, see there)
before anything else is sent.

Every working-directory access runs in a thread under ``lock`` (one writer at a time).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rsparkhub import protocol as P
from rsparkhub.agent.outbox import Outbox
from rsparkhub.agent.watch import Watch
from rsparkhub.agent.workdir import Change, Known, PathOutsideWorkdir, Workdir, walks_into

log = logging.getLogger("rsparkhub.agent.files")

FileMessage = P.FileFromAgent | P.FileDeletedByAgent | P.FileWant
Sender = Callable[[FileMessage], Awaitable[bool]]
SETTLE_TIMEOUT_S = 30.0


@dataclass
class ResyncPlan:
    """What a re-dial does with each path (see ``plan_resync``)."""

    to_send: list[str] = field(default_factory=list)
    to_want: list[str] = field(default_factory=list)
    to_delete: list[str] = field(default_factory=list)
    to_mark_known: dict[str, Known] = field(default_factory=dict)
    to_forget: list[str] = field(default_factory=list)


def plan_resync(
    manifest: Mapping[str, str],
    local: Mapping[str, Known | None],
    known: Mapping[str, Known],
) -> ResyncPlan:
    """Bring the working directory and the hub together after a re-dial.

    ``manifest``: what the hub holds (path → sha256); ``local``: the tree now
    (``Workdir.snapshot``; None = too big to send, left alone); ``known``: what the hub held
    at the last acknowledgement. Per path:

    * the tree holds what the hub holds → known (``to_mark_known``; e.g. an ack lost with
      the link);
    * gone from both → no longer known (``to_forget``);
    * code deleted it, and the hub changed it meanwhile → ``to_want`` (a saved file is
      never lost to a deletion);
    * code changed, created or deleted it since the last ack → ``to_send`` (code wins a
      conflict of two changes; the hub keeps the version it overwrites in the file's
      history);
    * code did not touch it and the hub refused this content → left alone;
    * code did not touch it and the hub no longer has it → ``to_delete``;
    * code did not touch it and the hub holds another version → ``to_want``.
    """
    plan = ResyncPlan()
    for path in sorted(set(manifest) | set(local) | set(known)):
        if path in local and local[path] is None:
            continue
        here = local.get(path)
        was = known.get(path)
        hub = manifest.get(path)
        here_sha = here.sha256 if here is not None else None
        if here is not None and here_sha == hub:
            now = Known(here.sha256, here.mtime_ns, here.size)
            if was != now:
                plan.to_mark_known[path] = now
            continue
        if here is None and hub is None:
            if was is not None:
                plan.to_forget.append(path)
            continue
        was_sha = was.sha256 if was is not None else None
        if here is None and hub is not None and hub != was_sha:
            plan.to_want.append(path)  # a save of the hub's outlives a deletion by code
        elif here_sha != was_sha:
            plan.to_send.append(path)
        elif was is not None and was.refused:
            continue
        elif hub is None:
            plan.to_delete.append(path)
        else:
            plan.to_want.append(path)
    return plan


@dataclass
class _InFlight:
    fseq: int
    path: str
    change: Change | None  # None: a deletion
    superseded: bool = False  # the hub wrote the path since: the ack commits nothing

    @property
    def expected(self) -> Known | None:
        c = self.change
        return None if c is None else Known(c.sha256, c.mtime_ns, c.size)


class FileSync:
    """See the module docstring."""

    def __init__(self, workdir: Workdir, outbox: Outbox, watch: Watch | None = None) -> None:
        self.workdir = workdir
        self.outbox = outbox
        # after an execution the tree is walked only if inotify saw something (watch.py);
        # made at the first look, in a thread (it walks the tree to watch its directories)
        self._watch = watch
        self._clean = False  # the last walk sent everything and nothing else changed since
        self.lock = asyncio.Lock()
        self._send: Sender | None = None
        self._next_fseq = 1
        self._inflight: dict[int, _InFlight] = {}
        self._latest: dict[str, _InFlight] = {}  # path → its newest change in flight
        self._settled = asyncio.Event()  # nothing in flight (or no link to wait for)
        self._settled.set()

    # ------------------------------------------------------------------ the link

    async def connected(
        self, send: Sender, manifest: Mapping[str, str] | None = None
    ) -> ResyncPlan | None:
        """The link is up. After a re-dial (``manifest``: the welcome's) the tree is first
        brought together with the hub (``plan_resync``) before any scan sends anything."""
        async with self.lock:
            self._send = send
            self._clean = False
            if manifest is None:
                return None
            return await self._resync(manifest)

    def disconnected(self) -> None:
        """The link is gone: every change in flight is unsent again (the next scan or the
        resync sends it; the hub may have committed it, which the manifest will say)."""
        self._send = None
        self._clean = False  # what was in flight is unsent again
        self._inflight.clear()
        self._latest.clear()
        self._settled.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def settled(self, timeout: float = SETTLE_TIMEOUT_S) -> bool:
        """Wait until the hub acknowledged every change sent so far (or the link dropped),
        at most ``timeout`` seconds: an execution's ``done`` follows its files, so a
        client that sees ``done`` finds them in the workspace. True if settled."""
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except TimeoutError:
            log.warning("%d file change(s) not acknowledged within %.0f s", self.in_flight, timeout)
            return False
        return True

    # ------------------------------------------------------------------ hub → workdir

    async def baseline(self) -> None:
        async with self.lock:
            await asyncio.to_thread(self.workdir.baseline)

    async def put(self, msg: P.FilePut) -> None:
        try:
            content = base64.b64decode(msg.content_b64, validate=True)
        except ValueError:
            log.warning("file_put %s: invalid base64", msg.path)
            return
        async with self.lock:
            if await self._sent_unsent_change(msg.path, msg.sha256):
                return
            self._supersede(msg.path)
            await self._apply(self.workdir.put, msg.path, content, msg.sha256)

    async def _sent_unsent_change(self, path: str, incoming: str) -> bool:
        """Code changed ``path`` since the hub last had it (``known`` or the change in
        flight) and no scan sent it: send it now and keep it (True) rather than write the
        hub's content (``incoming``, a sha256) over it."""
        if self._send is None:
            return False
        flight = self._latest.get(path)
        expected = flight.expected if flight is not None else self.workdir.known.get(path)
        try:
            self.workdir.resolve(path)  # put refuses what leaves the tree; so does this
        except PathOutsideWorkdir:
            return False
        change = await asyncio.to_thread(self.workdir.read_change, path)
        if change is None or change.sha256 == incoming:
            return False  # gone (a save outlives a deletion by code), too big, or the same
        if expected is not None and change.sha256 == expected.sha256:
            return False  # untouched by code since: the hub's content goes in
        log.info("file_put %s: code changed it meanwhile; its change is sent instead", path)
        return await self._send_change(path, change, expected)

    async def delete(self, msg: P.FileDelete) -> None:
        async with self.lock:
            self._supersede(msg.path)
            await self._apply(self.workdir.delete, msg.path)

    async def _apply(self, fn: Callable[..., None], path: str, *args: Any) -> None:
        """A write of the hub's into the tree; a failing disk is logged, not fatal (the
        next re-dial's resync asks for the file again)."""
        self._clean = False
        try:
            await asyncio.to_thread(fn, path, *args)
        except OSError as exc:
            log.error("cannot apply the hub's change to %s: %s", path, exc)

    def _supersede(self, path: str) -> None:
        latest = self._latest.pop(path, None)
        if latest is not None:
            for flight in self._inflight.values():
                if flight.path == path:
                    flight.superseded = True

    # ------------------------------------------------------------------ code → hub

    async def scan_and_send(self) -> None:
        """Send what code changed since the hub's last ack and is not already in flight."""
        if self._send is None:
            return  # not now: the resync after the re-dial covers it
        async with self.lock:
            # reads the events even when walking anyway; in a thread: directories that
            # appeared (or all, after an overflow) are walked to be watched
            quiet = await asyncio.to_thread(self._quiet)
            if quiet and self._clean:
                return
            self._clean = False
            expected = dict(self.workdir.known)
            for path, flight in self._latest.items():
                exp = flight.expected
                if exp is None:
                    expected.pop(path, None)
                else:
                    expected[path] = exp
            changes, deleted = await asyncio.to_thread(self.workdir.scan, expected)
            if self._watch is not None:
                self._watch.walked()
            for change in changes:
                target = expected.get(change.path)
                if target is not None and target.sha256 == change.sha256:
                    if change.path not in self._latest:
                        self.workdir.commit_change(change, refused=target.refused)  # touched
                    continue
                if not await self._send_change(change.path, change, target):
                    return
            for path in deleted:
                was = self.workdir.known.get(path)
                if path not in self._latest and was is not None and was.refused:
                    self.workdir.commit_deleted(path)  # the hub never had it
                    continue
                if not await self._send_change(path, None):
                    return
            self._clean = True

    def _quiet(self) -> bool:
        if self._watch is None:
            self._watch = Watch(self.workdir.root, walks_into)
        return self._watch.quiet()

    async def _send_change(
        self, path: str, change: Change | None, overwrote: Known | None = None
    ) -> bool:
        """Send one change; ``overwrote``: what the tree held for ``path`` before it."""
        send = self._send
        if send is None:
            return False
        flight = _InFlight(self._next_fseq, path, change)
        self._next_fseq += 1
        msg: FileMessage
        if change is None:
            msg = P.FileDeletedByAgent(fseq=flight.fseq, path=path)
        else:
            msg = P.FileFromAgent(
                fseq=flight.fseq,
                path=path,
                content_b64=base64.b64encode(change.content).decode(),
                sha256=change.sha256,
                base_sha256=overwrote.sha256 if overwrote is not None else None,
            )
        self._inflight[flight.fseq] = flight
        self._latest[path] = flight
        self._settled.clear()
        if await send(msg):
            return True
        self.disconnected()
        return False

    async def acked(self, ack: P.FileAck) -> None:
        """The hub committed (or refused for good) the change ``ack.fseq``."""
        async with self.lock:
            flight = self._inflight.pop(ack.fseq, None)
            if flight is None:
                log.warning("file_ack for unknown fseq %d ignored", ack.fseq)
                return
            if self._latest.get(flight.path) is flight:
                del self._latest[flight.path]
            if not self._inflight:
                self._settled.set()
            if not ack.ok:
                self.outbox.emit(
                    P.FileRefusedEvent(
                        path=flight.path,
                        error_code=ack.error_code or "refused",
                        message=ack.message or f"The hub did not save '{flight.path}'.",
                    )
                )
            if flight.superseded:
                return
            if flight.change is None:
                self.workdir.commit_deleted(flight.path)
            else:
                self.workdir.commit_change(flight.change, refused=not ack.ok)

    # ------------------------------------------------------------------ re-dial

    async def _resync(self, manifest: Mapping[str, str]) -> ResyncPlan:
        local = await asyncio.to_thread(self.workdir.snapshot)
        plan = plan_resync(manifest, local, self.workdir.known)
        self.workdir.known.update(plan.to_mark_known)
        for path in plan.to_forget:
            self.workdir.commit_deleted(path)
        for path in plan.to_delete:
            await self._apply(self.workdir.delete, path)
        if plan.to_send or plan.to_want or plan.to_delete:
            log.info(
                "resync: %d to send, %d wanted from the hub, %d deleted here",
                len(plan.to_send),
                len(plan.to_want),
                len(plan.to_delete),
            )
        if plan.to_want and self._send is not None:
            if not await self._send(P.FileWant(paths=plan.to_want)):
                self.disconnected()
                return plan
        for path in plan.to_send:
            change = await asyncio.to_thread(self.workdir.read_change, path)
            if not await self._send_change(path, change, self.workdir.known.get(path)):
                break
        return plan
