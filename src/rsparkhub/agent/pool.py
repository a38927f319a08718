"""The session's kernels, one per language, started lazily.

``KernelPool`` owns the kernels (start on first use, restart, mark dead, shutdown), their
status events and the ``agent-kernels.pid`` file next to the workdir, and the environment
kernels (and document renders) run with. Talking to one running kernel is
``kernels.Kernel``'s job; launching its process is ``launch``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from rsparkhub.agent.kernels import Kernel, KernelError, died_message
from rsparkhub.agent.launch import available_languages
from rsparkhub.agent.packages import kernel_vars
from rsparkhub.protocol import LANGUAGES, Language

log = logging.getLogger("rsparkhub.agent.kernels")

StatusCallback = Callable[[str, str, str | None], None]  # language, state, message


class KernelPool:
    """The session's kernels, keyed by language (see module docstring)."""

    def __init__(
        self,
        workdir: Path,
        *,
        runtime_dir: Path,
        pid_file: Path,
        on_status: StatusCallback,
        wait_for_room: Callable[[], Awaitable[None]],
        languages: list[Language] | None = None,
        on_started: Callable[[Kernel], Awaitable[None]] | None = None,
    ) -> None:
        self.on_started = on_started
        self.workdir = workdir
        self.runtime_dir = runtime_dir
        self.pid_file = pid_file
        self.on_status = on_status
        self.wait_for_room = wait_for_room
        installed = available_languages()
        self.languages: list[Language] = (
            installed if languages is None else [x for x in installed if x in languages]
        )
        self.kernels: dict[str, Kernel] = {}
        self._locks: dict[str, asyncio.Lock] = {lang: asyncio.Lock() for lang in LANGUAGES}
        self._closed = False

    def kernel_env(self) -> dict[str, str]:
        """The environment kernels (and document renders) run with."""
        return self._env()

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RSPARKHUB_SESSION_TOKEN")}
        env["JUPYTER_RUNTIME_DIR"] = str(self.runtime_dir)
        env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        # R's Spark interface (r/spark.R) runs pyspark through reticulate: the session's Python
        env.setdefault("RETICULATE_PYTHON", sys.executable)
        env["RSPARKHUB_RSPARK_R"] = str(Path(__file__).parent / "r" / "spark.R")
        env.update(kernel_vars(env))  # the workspace's overlay and declared environment
        return env

    def write_pid_file(self) -> None:
        pids = [k.pid for k in self.kernels.values() if k.pid is not None]
        tmp = self.pid_file.with_suffix(".tmp")
        try:
            tmp.write_text("".join(f"{p}\n" for p in pids))
            os.replace(tmp, self.pid_file)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.pid_file, exc)

    def running(self, language: str) -> Kernel | None:
        return self.kernels.get(language)

    async def get(self, language: Language) -> Kernel:
        """The language's kernel, started (with status events) if it is not running."""
        if language not in self.languages:
            raise KernelError(
                "language_unavailable", f"No {language} kernel is installed on this server."
            )
        async with self._locks[language]:
            if self._closed:
                raise KernelError("shutting_down", "The session is stopping.")
            kernel = self.kernels.get(language)
            if kernel is not None:
                if await kernel.is_alive():
                    return kernel
                await self._drop(language, died_message(language))
            self.on_status(language, "starting", None)
            self.runtime_dir.mkdir(parents=True, exist_ok=True)
            kernel = Kernel(
                language,
                cwd=self.workdir,
                env=self._env(),
                wait_for_room=self.wait_for_room,
                runtime_dir=self.runtime_dir,
            )
            try:
                await kernel.start()
            except asyncio.CancelledError:  # the agent stops: leave no kernel behind
                with contextlib.suppress(Exception):
                    await kernel.shutdown()
                raise
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await kernel.shutdown()
                self.on_status(language, "dead", str(exc))
                if isinstance(exc, KernelError):
                    raise
                raise KernelError(
                    "kernel_start_failed", f"The {language} kernel did not start: {exc}"
                ) from exc
            self.kernels[language] = kernel
            self.write_pid_file()
            await self._started(kernel)
            self.on_status(language, "idle", None)
            return kernel

    async def _started(self, kernel: Kernel) -> None:
        if self.on_started is not None:
            try:
                await self.on_started(kernel)
            except Exception:  # the kernel works without what the hook adds
                log.exception("start hook of the %s kernel failed", kernel.language)

    async def _drop(self, language: str, message: str, state: str = "dead") -> None:
        kernel = self.kernels.pop(language, None)
        if kernel is not None:
            with contextlib.suppress(Exception):
                await kernel.shutdown()
            self.write_pid_file()
            self.on_status(language, state, message)

    async def discard(self, language: str) -> None:
        """Shut the language's kernel down (its next request starts a new one)."""
        async with self._locks[language]:
            await self._drop(
                language, f"the {language} kernel starts anew for this workspace", "restarting"
            )

    async def mark_dead(self, language: str) -> None:
        async with self._locks[language]:
            await self._drop(language, died_message(language))

    async def restart(self, language: Language) -> Kernel:
        kernel = self.kernels.get(language)
        if kernel is None:
            return await self.get(language)
        async with self._locks[language]:
            self.on_status(language, "restarting", None)
            try:
                await kernel.restart()
            except Exception as exc:
                self.kernels.pop(language, None)
                with contextlib.suppress(Exception):
                    await kernel.shutdown()
                self.write_pid_file()
                self.on_status(language, "dead", str(exc))
                raise KernelError("restart_failed", f"Restarting failed: {exc}") from exc
            self.write_pid_file()
            await self._started(kernel)
            self.on_status(language, "idle", None)
            return kernel

    async def shutdown_all(self) -> None:
        self._closed = True
        kernels = list(self.kernels.items())
        self.kernels.clear()
        await asyncio.gather(*(k.shutdown() for _, k in kernels), return_exceptions=True)
        self.write_pid_file()
