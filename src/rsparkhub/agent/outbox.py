"""The agent's outgoing event stream: sequence numbers, the unacknowledged buffer,
coalescing of stream text and backpressure.

Every event the session produces is wrapped in an ``EventEnvelope`` with ``seq`` 1, 2, 3 …
(per agent lifetime) and kept here until the hub acknowledges it with ``AckMessage``.
The send loop (in ``main.Agent``) takes batches of envelopes that have not been sent on the
current connection; after a re-dial ``rewind(acked_seq)`` drops what the hub already has
and marks the rest for resending.

Consecutive ``StreamEvent``s of the same request and stream name are merged while they wait
to be sent (up to ``coalesce_cap`` characters per event). When the buffered bytes exceed
``max_unacked_bytes`` the producers (kernel output readers) wait in ``wait_for_room``, and
with them the kernels (see ``launch.py``): this buffer is what bounds a session's memory
for a fast producer, so it is kept small (the hub acknowledges a batch after one fsync).

Nothing here does I/O; it is a plain data structure plus two asyncio events.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque

from rsparkhub.protocol import EventEnvelope, PlotEvent, StreamEvent

DEFAULT_MAX_UNACKED_BYTES = 16 * 1024 * 1024
DEFAULT_COALESCE_CAP = 256 * 1024
DEFAULT_BATCH_BYTES = 4 * 1024 * 1024


def _event_size(event: object) -> int:
    if isinstance(event, StreamEvent):
        return len(event.text) + 100
    if isinstance(event, PlotEvent):
        return len(event.content_b64 or "") + 200
    return 200


class Outbox:
    """Sequenced, acknowledged, coalescing event buffer (see module docstring)."""

    def __init__(
        self,
        session_id: str,
        *,
        max_unacked_bytes: int = DEFAULT_MAX_UNACKED_BYTES,
        coalesce_cap: int = DEFAULT_COALESCE_CAP,
    ) -> None:
        self.session_id = session_id
        self.max_unacked_bytes = max_unacked_bytes
        self.coalesce_cap = coalesce_cap
        self._buffer: deque[EventEnvelope] = deque()
        self._sizes: deque[int] = deque()
        self._bytes = 0
        self._next_seq = 1
        self._sent_upto = 0  # highest seq handed to the send loop on this connection
        self.acked_seq = 0
        self.pending = asyncio.Event()  # set when there is something to send
        self._room = asyncio.Event()
        self._room.set()

    # ------------------------------------------------------------------ producers

    def emit(self, event: object) -> int:
        """Queue one event; returns its seq (the seq it was merged into, if coalesced)."""
        if isinstance(event, StreamEvent) and len(event.text) > self.coalesce_cap:
            # one kernel message bigger than the cap: split it
            text, cap, seq = event.text, self.coalesce_cap, 0
            for i in range(0, len(text), cap):
                part = StreamEvent(
                    request_id=event.request_id, name=event.name, text=text[i : i + cap]
                )
                seq = self.emit(part)
            return seq
        if isinstance(event, StreamEvent) and self._buffer:
            last = self._buffer[-1]
            prev = last.event
            if (
                last.seq > self._sent_upto
                and isinstance(prev, StreamEvent)
                and prev.request_id == event.request_id
                and prev.name == event.name
                and len(prev.text) + len(event.text) <= self.coalesce_cap
            ):
                prev.text += event.text
                self._sizes[-1] += len(event.text)
                self._bytes += len(event.text)
                self._update_room()
                self.pending.set()
                return last.seq
        seq = self._next_seq
        self._next_seq += 1
        env = EventEnvelope(session_id=self.session_id, seq=seq, event=event)  # type: ignore[arg-type]
        size = _event_size(event)
        self._buffer.append(env)
        self._sizes.append(size)
        self._bytes += size
        self._update_room()
        self.pending.set()
        return seq

    async def wait_for_room(self) -> None:
        """Block while the unacknowledged buffer is over its limit (backpressure)."""
        while not self._room.is_set():
            await self._room.wait()

    # ------------------------------------------------------------------ the link

    @property
    def first_unacked_seq(self) -> int:
        return self._buffer[0].seq if self._buffer else self._next_seq

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    @property
    def unacked_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._buffer)

    def ack(self, seq: int) -> None:
        """The hub made every event with ``seq <= seq`` durable. An ack past the last seq
        this outbox assigned is bogus (a confused hub, a corrupted frame): it counts only
        up to that seq, or later events would be taken as sent and never go out."""
        seq = min(seq, self.last_seq)
        if seq > self.acked_seq:
            self.acked_seq = seq
        while self._buffer and self._buffer[0].seq <= seq:
            self._buffer.popleft()
            self._bytes -= self._sizes.popleft()
        if self._sent_upto < self.acked_seq:
            self._sent_upto = self.acked_seq
        self._update_room()

    def rewind(self, acked_seq: int) -> None:
        """A (re)connection: drop what the hub has, resend everything else."""
        self.ack(acked_seq)
        self._sent_upto = self.acked_seq
        if self._buffer:
            self.pending.set()

    def take_batch(self, max_bytes: int = DEFAULT_BATCH_BYTES) -> list[EventEnvelope]:
        """The next envelopes not yet sent on this connection, in seq order."""
        batch: list[EventEnvelope] = []
        total = 0
        if not self._buffer:
            self.pending.clear()
            return batch
        # seqs in the buffer are contiguous, so the first unsent one is at a known index
        start = max(0, self._sent_upto + 1 - self._buffer[0].seq)
        envs = itertools.islice(self._buffer, start, None)
        sizes = itertools.islice(self._sizes, start, None)
        for env, size in zip(envs, sizes, strict=True):
            if batch and total + size > max_bytes:
                break
            batch.append(env)
            total += size
        if batch:
            self._sent_upto = batch[-1].seq
        if not self.has_unsent():
            self.pending.clear()
        return batch

    def has_unsent(self) -> bool:
        return bool(self._buffer) and self._buffer[-1].seq > self._sent_upto

    def _update_room(self) -> None:
        if self._bytes > self.max_unacked_bytes:
            self._room.clear()
        else:
            self._room.set()
