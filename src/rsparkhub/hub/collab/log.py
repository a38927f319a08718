"""The update log of one shared document: an append-only file of Yjs updates, so that every
update the hub applied survives a hub restart (it is written before the hub passes the update
on to the other editors). Records are ``kind (1 byte) | length (4 bytes, big-endian) |
payload``: ``U`` an update, ``B`` the base (the file version the document was last turned
into, and the document's state then, see room.py). Compaction rewrites the file as one
``U`` record of the whole state and one ``B`` record (a new file renamed over the old).

Blocking file I/O: callers run these methods in a thread. Owns only its file."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

_HEADER = struct.Struct(">cI")


@dataclass
class Base:
    """The file version the document last matched, and the document's state at that point.
    ``epoch`` names the document's history: a new one when a document is made from a file
    without a log, so a client holding another history knows to start afresh."""

    version: int
    state: bytes
    epoch: str = ""


@dataclass
class Loaded:
    updates: list[bytes] = field(default_factory=list)
    base: Base | None = None
    path: str | None = None


class UpdateLog:
    def __init__(self, file: Path) -> None:
        self.file = file
        self.size = file.stat().st_size if file.exists() else 0
        self.compacted_size = self.size

    def read(self) -> Loaded:
        """Every record of the log; a torn last record (a crash mid-write) is dropped."""
        out = Loaded()
        try:
            data = self.file.read_bytes()
        except FileNotFoundError:
            return out
        pos = 0
        while pos + _HEADER.size <= len(data):
            kind, length = _HEADER.unpack_from(data, pos)
            start = pos + _HEADER.size
            if start + length > len(data):
                break
            payload = data[start : start + length]
            if kind == b"U":
                out.updates.append(payload)
            elif kind == b"B":
                meta_len = int.from_bytes(payload[:4], "big")
                meta = json.loads(payload[4 : 4 + meta_len])
                out.base = Base(
                    int(meta["version"]), payload[4 + meta_len :], str(meta.get("epoch", ""))
                )
                out.path = str(meta.get("path")) if meta.get("path") else out.path
            pos = start + length
        if pos != len(data):  # a torn record: cut it off so that appends stay readable
            with self.file.open("r+b") as f:
                f.truncate(pos)
            self.size = pos
        return out

    def append_update(self, update: bytes) -> None:
        self._append([(b"U", update)])

    def append_base(self, base: Base, path: str) -> None:
        self._append([(b"B", _base_payload(base, path))])

    def compact(self, state: bytes, base: Base, path: str) -> None:
        """Replace the log by the document's whole state and its base."""
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        body = _record(b"U", state) + _record(b"B", _base_payload(base, path))
        with tmp.open("wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.file)
        self.size = self.compacted_size = len(body)

    def needs_compaction(self) -> bool:
        return self.size > max(256 * 1024, 4 * self.compacted_size)

    def delete(self) -> None:
        self.file.unlink(missing_ok=True)
        self.size = self.compacted_size = 0

    def _append(self, records: list[tuple[bytes, bytes]]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        body = b"".join(_record(k, p) for k, p in records)
        # One write of the whole record: a hub killed after it returns keeps it (the page
        # cache outlives the process); a machine crash may lose the last few, not tear older.
        with self.file.open("ab") as f:
            f.write(body)
        self.size += len(body)


def _record(kind: bytes, payload: bytes) -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


def _base_payload(base: Base, path: str) -> bytes:
    meta = json.dumps({"version": base.version, "path": path, "epoch": base.epoch}).encode()
    return len(meta).to_bytes(4, "big") + meta + base.state
