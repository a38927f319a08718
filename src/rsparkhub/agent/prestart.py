"""Starting a session's likely kernel before its first request, as RStudio starts R with
its session: the user's first run then does not wait for a kernel to start.

The hub names the language (``--prestart``; ``hub/files.latest_language``: the one of the
workspace's most recently changed file that runs in a kernel). The kernel starts once the
hub has put every file of the first welcome's manifest into the working directory, so it
starts as it would for a first request: R reads the workspace's ``.Rprofile``, and the
saved R image is restored with the workspace's setting known. A re-dial never starts
one; a request that comes first simply starts (or waits for) the kernel itself.

Owns: when the prestart happens. Must not: start a kernel ``KernelPool`` would not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rsparkhub.agent.kernels import KernelError
from rsparkhub.protocol import Language

log = logging.getLogger("rsparkhub.agent.prestart")


class Prestart:
    """Starts ``languages``' kernels (through ``start``: ``KernelPool.get``) once the first
    welcome's files are all in place."""

    def __init__(
        self, languages: list[Language], start: Callable[[Language], Awaitable[Any]]
    ) -> None:
        self.languages = languages
        self.start = start
        self._waiting: set[str] | None = None  # the manifest's paths not put yet
        self.task: asyncio.Task[None] | None = None

    def welcomed(self, manifest: dict[str, str], resumed: bool) -> None:
        if resumed or self._waiting is not None:
            return
        self._waiting = set(manifest)
        self._maybe_start()

    def file_put(self, path: str) -> None:
        """The hub put ``path`` (written, or refused: either way it is settled)."""
        if self._waiting:
            self._waiting.discard(path)
            self._maybe_start()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _maybe_start(self) -> None:
        if self._waiting or self.task is not None or not self.languages:
            return
        self.task = asyncio.create_task(self._run(), name="kernel-prestart")

    async def _run(self) -> None:
        for language in self.languages:
            try:
                await self.start(language)
            except KernelError as exc:  # said to clients as the kernel's status already
                log.warning("the %s kernel did not start ahead: %s", language, exc.message)
