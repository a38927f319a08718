"""``render``: one document of the working directory to one file next to it (see the package
docstring): resolve the paths, pick the engine, run it in a private temporary directory,
check the HTML is self-contained, and move the output into place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rsparkhub.agent.documents.jupyter import render_jupyter
from rsparkhub.agent.documents.process import Job, RenderLog
from rsparkhub.agent.documents.quarto import render_quarto
from rsparkhub.agent.documents.results import Format, RenderError, RenderResult
from rsparkhub.agent.documents.rmarkdown import render_rmarkdown, render_rnw
from rsparkhub.agent.documents.selfcontained import local_references_of
from rsparkhub.agent.documents.source import MARKDOWN_SUFFIXES, choose_engine
from rsparkhub.agent.workdir import TMP_PREFIX, PathOutsideWorkdir, Workdir


async def render(
    workdir: Path,
    path: str,
    *,
    output: str | None = None,
    on_log: Callable[[str], None] | None = None,
    timeout_s: float = 600,
    env: dict[str, str] | None = None,
) -> RenderResult:
    """Render the workdir-relative ``path`` to ``output`` (default: next to it, ``.html``, or
    ``.pdf`` for ``.Rnw``) and return what was written; raises ``RenderError``.

    ``on_log`` receives the log line by line while the render runs (called in the event
    loop's thread). ``env`` is the environment of the render's processes (default: this
    process's). ``timeout_s`` bounds the whole render; its processes are killed then.
    """
    started = time.monotonic()
    root = Path(workdir).resolve()
    wd = Workdir(root)
    try:
        source = wd.resolve(path)
    except PathOutsideWorkdir as e:
        raise RenderError("path_outside_workdir", str(e)) from None
    if not source.is_file():
        raise RenderError("not_found", f"There is no file {path!r} in the working directory.")
    text: str | None = None
    if source.suffix.lower() in MARKDOWN_SUFFIXES:
        text = source.read_text(encoding="utf-8", errors="replace")
    proc_env = dict(os.environ if env is None else env)
    engine = choose_engine(source, text, proc_env.get("PATH"))
    fmt: Format = "pdf" if engine == "knitr-latex" else "html"
    target_rel = output if output is not None else Path(path).with_suffix("." + fmt).as_posix()
    try:
        target = wd.resolve(target_rel)
    except PathOutsideWorkdir:
        raise RenderError(
            "path_outside_workdir",
            f"The output {target_rel!r} must be a path inside the working directory.",
        ) from None
    if target.suffix.lower() != "." + fmt:
        raise RenderError(
            "bad_output", f"The output of {source.name} is {fmt.upper()}: name it *.{fmt}."
        )
    if target == source:
        raise RenderError("bad_output", "The output cannot replace the document itself.")
    if target.is_dir():
        raise RenderError("bad_output", f"The output {target_rel!r} is a directory.")
    target_rel = target.relative_to(root).as_posix()

    out = RenderLog(on_log)
    tmp = Path(tempfile.mkdtemp(prefix="rsparkhub-render-"))
    job = Job(source, tmp, proc_env, out)
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            if engine == "rmarkdown":
                produced = await render_rmarkdown(job, text or "")
            elif engine == "knitr-latex":
                produced = await render_rnw(job)
            elif engine == "quarto":
                produced = await render_quarto(job, text or "")
            else:
                produced = await render_jupyter(job, text)
            if fmt == "html":
                refs = await asyncio.to_thread(local_references_of, produced)
                if refs:
                    raise RenderError(
                        "not_self_contained",
                        f"The rendered HTML of {source.name} refers to local files "
                        f"({', '.join(refs[:3])}), which cannot be embedded; use images the "
                        "renderer can embed (e.g. ![caption](path) in markdown).",
                        log=out.text(),
                    )
            try:
                await asyncio.to_thread(_install, produced, target)
            except OSError as e:
                raise RenderError(
                    "bad_output", f"Cannot write {target_rel}: {e.strerror or e}.", log=out.text()
                ) from None
    except Exception:
        if not deadline.expired():
            raise
        # (a library may turn the cancellation into an error of its own)
        raise RenderError(
            "timeout",
            f"Rendering {source.name} took longer than {timeout_s:g} s and was stopped.",
            log=out.text(),
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out.line(f"Output created: {target_rel}")
    return RenderResult(target_rel, fmt, engine, out.text(), time.monotonic() - started)


def _install(produced: Path, target: Path) -> None:
    """Copy ``produced`` over ``target`` atomically (a temp file next to it, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as dst, open(produced, "rb") as src:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
