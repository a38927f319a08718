"""The hub's secret key, ``DATA_DIR/hub-secret``, and the one rule for deriving values from it.

The key is 32 random bytes (hex), created on first use with mode 0600 in the hub's private
data directory, which no session can see. Values that must be stable across hub restarts but
unguessable by users are derived from it instead of being stored: today each user's
PostgreSQL password (hub/userdb.py), so the hub database holds no such secret. Losing the
file changes every derived value (the hub re-applies derived passwords at each session start,
so new sessions keep working); back it up with the hub database.

This module owns the file and the derivation; it never logs the key or a derived value.
File I/O is blocking: callers on the event loop run ``load`` in a thread.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

FILE_NAME = "hub-secret"
KEY_BYTES = 32


class SecretKeyError(Exception):
    """The key file cannot be created or read; the message says which file and why."""


def path_in(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def load(path: Path) -> bytes:
    """The key in ``path``, creating it (atomically, mode 0600) when it does not exist.

    A key file readable by others is made private again; a damaged one is an error, never
    silently replaced (that would change every derived value)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = _create(path)
    except OSError as exc:
        raise SecretKeyError(f"cannot read {path}: {exc}") from None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise SecretKeyError(
            f"{path} is damaged (expected {KEY_BYTES * 2} hex digits): restore it from a "
            "backup, or delete it to make a new one (every user's next session then gets a "
            "new database password)"
        )
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError as exc:
        raise SecretKeyError(f"cannot make {path} private: {exc}") from None
    return key


def _create(path: Path) -> str:
    text = secrets.token_hex(KEY_BYTES) + "\n"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another process created it first: use theirs
        except FileExistsError:
            return path.read_text()
        return text
    except OSError as exc:
        raise SecretKeyError(f"cannot create {path}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def derive(key: bytes, purpose: str, *parts: str) -> bytes:
    """HMAC-SHA256, keyed with the hub's key, of ``purpose`` and ``parts`` (NUL-separated).

    ``purpose`` names what the value is for, so that two uses never share a value."""
    fields = (purpose, *parts)
    if any("\0" in f for f in fields):
        raise ValueError("derivation inputs may not contain NUL")
    return hmac.new(key, "\0".join(fields).encode(), hashlib.sha256).digest()
