"""The binary messages of a document socket: y-protocols' sync and awareness messages
(lib0 encoding: unsigned LEB128 integers, length-prefixed byte strings). Parsing and
building only; room.py decides what a message does."""

from __future__ import annotations

import json
from dataclasses import dataclass

SYNC, AWARENESS = 0, 1
STEP1, STEP2, UPDATE = 0, 1, 2
EMPTY_UPDATE = b"\x00\x00"


class BadMessage(ValueError):
    """A frame that is not a y-protocols message."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def uint(self) -> int:
        n, shift = 0, 0
        while True:
            if self.pos >= len(self.data) or shift > 63:
                raise BadMessage("truncated integer")
            b = self.data[self.pos]
            self.pos += 1
            n |= (b & 0x7F) << shift
            if b < 0x80:
                return n
            shift += 7

    def bytes(self) -> bytes:
        n = self.uint()
        if self.pos + n > len(self.data):
            raise BadMessage("truncated byte string")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def uint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def var_bytes(b: bytes) -> bytes:
    return uint(len(b)) + b


@dataclass
class Message:
    kind: int  # SYNC or AWARENESS
    step: int  # STEP1, STEP2, UPDATE (SYNC only)
    payload: bytes  # a state vector, an update, or an awareness update


def parse(frame: bytes) -> Message:
    r = _Reader(frame)
    kind = r.uint()
    if kind == SYNC:
        step = r.uint()
        if step not in (STEP1, STEP2, UPDATE):
            raise BadMessage(f"unknown sync message {step}")
        return Message(kind, step, r.bytes())
    if kind == AWARENESS:
        return Message(kind, 0, r.bytes())
    raise BadMessage(f"unknown message type {kind}")


def sync(step: int, payload: bytes) -> bytes:
    return uint(SYNC) + uint(step) + var_bytes(payload)


def awareness(update: bytes) -> bytes:
    return uint(AWARENESS) + var_bytes(update)


def awareness_states(update: bytes) -> dict[int, tuple[int, str]]:
    """The (clock, JSON state) of each awareness client in an awareness update."""
    r = _Reader(update)
    out: dict[int, tuple[int, str]] = {}
    for _ in range(r.uint()):
        client, clock = r.uint(), r.uint()
        state = r.bytes().decode()
        json.loads(state)  # a malformed state is a bad message
        out[client] = (clock, state)
    return out


def awareness_update(states: dict[int, tuple[int, str]]) -> bytes:
    body = uint(len(states))
    for client, (clock, state) in states.items():
        body += uint(client) + uint(clock) + var_bytes(state.encode())
    return body
