"""The durable output stream of one session: an append-only JSON-lines file of
``EventEnvelope``s in seq order. The hub acknowledges an event to the agent only after it
is here, and every client socket tails this file from its own position — so replay after a
reconnect, two clients seeing identical streams, and bounded hub memory all follow from one
mechanism. Owns ``DATA_DIR/logs/<session>/events.jsonl``."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

# Remember the file offset of every Nth event so a reader starting at ``since`` seeks
# instead of scanning the whole file.
_INDEX_EVERY = 256


class EventLog:
    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        path.parent.mkdir(parents=True, exist_ok=True)
        self.last_seq = 0
        self._index: list[tuple[int, int]] = [(0, 0)]  # (seq before offset, offset)
        self._recover()
        self._fh = open(path, "ab")  # noqa: SIM115 - lives as long as the session
        self._changed = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self.synced_seq = self.last_seq
        self.closed = False

    def _recover(self) -> None:
        """Read the existing file (after a hub restart), dropping a torn last line."""
        if not self.path.exists():
            return
        good = 0
        with open(self.path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                try:
                    seq = int(json.loads(line)["seq"])
                except (ValueError, KeyError, TypeError):
                    break
                if seq % _INDEX_EVERY == 0:
                    self._index.append((seq, good + len(line)))
                self.last_seq = seq
                good += len(line)
        if good != self.path.stat().st_size:
            with open(self.path, "r+b") as fh:
                fh.truncate(good)

    @property
    def size(self) -> int:
        return self._fh.tell()

    async def append(self, lines: list[tuple[int, str]]) -> None:
        """Append (seq, json) pairs whose seq continues the log; others are ignored."""
        buf = bytearray()
        offset = self._fh.tell()
        for seq, text in lines:
            if seq != self.last_seq + 1:
                continue
            data = text.encode() + b"\n"
            buf += data
            self.last_seq = seq
            if seq % _INDEX_EVERY == 0:
                self._index.append((seq, offset + len(buf)))
        if not buf:
            return
        self._fh.write(buf)
        self._fh.flush()  # now in the page cache: it survives a crash of the hub process
        self._notify()

    async def sync(self) -> int:
        """Make everything appended so far durable (fsync); return the seq it covers.

        Kept apart from ``append`` so that clients see an event as soon as it is written,
        while the agent's acknowledgement — after which it forgets the event — waits for
        the disk. Concurrent callers share one fsync per batch of appends."""
        target = self.last_seq
        if self.fsync and not self.closed and target > self.synced_seq:
            async with self._sync_lock:
                if target > self.synced_seq and not self.closed:
                    await asyncio.to_thread(os.fsync, self._fh.fileno())
        self.synced_seq = max(self.synced_seq, target)
        return self.synced_seq

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def offset_for(self, since: int) -> tuple[int, int]:
        """A (seq, offset) at or before ``since`` to start reading from."""
        best = (0, 0)
        for seq, off in self._index:
            if seq <= since:
                best = (seq, off)
            else:
                break
        return best

    async def wait_changed(self, timeout: float | None = None) -> None:
        ev = self._changed
        if self.closed:
            return
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except TimeoutError:
            pass

    def close(self) -> None:
        self.closed = True
        self._fh.close()
        self._notify()


class LogReader:
    """A cursor over an EventLog: yields the raw JSON of events with seq > since."""

    def __init__(self, log: EventLog, since: int) -> None:
        self.log = log
        self.since = since
        _, self.offset = log.offset_for(since)
        self._fh = open(log.path, "rb")  # noqa: SIM115
        self._partial = b""

    def read_available(self, max_bytes: int = 1 << 20) -> list[tuple[int, str]]:
        self._fh.seek(self.offset)
        chunk = self._fh.read(max_bytes)
        out: list[tuple[int, str]] = []
        if not chunk:
            return out
        end = chunk.rfind(b"\n")
        if end < 0:
            if len(chunk) >= max_bytes:  # one huge line: read it whole
                self._fh.seek(self.offset)
                line = self._fh.readline()
                if line.endswith(b"\n"):
                    chunk, end = line, len(line) - 1
                else:
                    return out
            else:
                return out
        for line in chunk[: end + 1].splitlines():
            seq = _seq_of(line)
            if seq > self.since:
                out.append((seq, line.decode()))
                self.since = seq
        self.offset += end + 1
        return out

    def close(self) -> None:
        self._fh.close()


def _seq_of(line: bytes) -> int:
    # The envelope is written by pydantic with "type" then "session_id" then "seq"; parse
    # just enough to find the seq without decoding the (possibly large) event.
    i = line.find(b'"seq":')
    if i < 0:
        return 0
    j = i + 6
    k = j
    while k < len(line) and line[k : k + 1].isdigit():
        k += 1
    return int(line[j:k] or b"0")
