"""The saved R image (the workspace setting ``save_r_image``).

On a clean stop the R global environment goes to ``.RData`` in the working directory (and
is sent to the hub before the agent exits); when the R kernel first starts in a later
session, it is loaded again. Objects that hold external pointers are named in a warning.
Nothing else of the session is saved here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from rsparkhub import protocol as P
from rsparkhub.agent.display import Emit, Execution
from rsparkhub.agent.filesync import FileSync
from rsparkhub.agent.introspect import CallError, Introspector
from rsparkhub.agent.kernels import Kernel
from rsparkhub.agent.pool import KernelPool

log = logging.getLogger("rsparkhub.agent.rimage")

IMAGE_NAME = ".RData"


class RImage:
    def __init__(
        self,
        *,
        emit: Emit,
        files: FileSync,
        kernels: KernelPool,
        introspector: Introspector,
        settings: Callable[[], dict[str, Any]],
        current: Callable[[], Execution | None],
    ) -> None:
        self.emit = emit
        self.files = files
        self.path = files.workdir.root / IMAGE_NAME
        self.kernels = kernels
        self.introspector = introspector
        self.settings = settings
        self.current = current
        self._restored = False

    @property
    def enabled(self) -> bool:
        return bool(self.settings().get("save_r_image"))

    async def save(self) -> None:
        """Clean stop with ``save_r_image``: the R global environment goes to ``.RData``
        in the workspace (synced to the hub before the agent exits)."""
        cur = self.current()
        running = self.kernels.running("r")
        if cur is not None and cur.language == "r" and running is not None:
            try:
                await running.interrupt()
            except Exception:  # best effort: the save below says whether R answered
                log.warning("interrupting R before saving its image failed", exc_info=True)
        try:
            saved = await asyncio.wait_for(self.introspector.save_image(self.path), 60)
        except (CallError, TimeoutError) as exc:
            msg = exc.message if isinstance(exc, CallError) else "timed out"
            self.emit(
                P.StreamEvent(name="stderr", text=f"Warning: the R image was not saved: {msg}\n")
            )
            return
        if saved is None:
            return
        bad = saved.get("unsaveable") or []
        if bad:
            self.emit(
                P.StreamEvent(
                    name="stderr",
                    text="Warning: saved the R image (.RData), but these objects hold external "
                    "pointers (connections, handles) and will not work after a restore: "
                    + ", ".join(str(b) for b in bad)
                    + "\n",
                )
            )
        await self.files.scan_and_send()
        await self.files.settled()  # the image is in the workspace before the agent exits

    async def restore(self, kernel: Kernel) -> None:
        """The R kernel is ready for the first time: load ``.RData`` if the setting is on."""
        if self._restored or not self.enabled:
            return
        self._restored = True
        if not await asyncio.to_thread(self.path.is_file):
            return
        try:
            loaded = await self.introspector.load_image(kernel, self.path)
        except CallError as exc:
            self.emit(
                P.StreamEvent(
                    name="stderr", text=f"Warning: could not restore the R image: {exc.message}\n"
                )
            )
            return
        names = loaded.get("loaded") or []
        cur = self.current()
        self.emit(
            P.StreamEvent(
                request_id=cur.request_id if cur else None,
                name="stdout",
                text=f"[Restored {len(names)} object(s) from the saved R image (.RData)]\n",
            )
        )
