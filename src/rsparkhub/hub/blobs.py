"""Content-addressed blob store: bytes stored once under their sha256, never modified.
Owns the ``blobs/`` directory of the data dir and nothing else."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha: str) -> Path:
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha[:2] / sha[2:]

    def _put_sync(self, data: bytes) -> str:
        sha = sha256_hex(data)
        dest = self.path_for(sha)
        if dest.exists():
            return sha
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    async def put(self, data: bytes) -> str:
        """Store bytes durably; returns their sha256."""
        return await asyncio.to_thread(self._put_sync, data)

    async def get(self, sha: str) -> bytes:
        return await asyncio.to_thread(self.path_for(sha).read_bytes)

    def exists(self, sha: str) -> bool:
        return self.path_for(sha).exists()
