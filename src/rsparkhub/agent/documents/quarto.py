"""Quarto documents (``.qmd``) through ``quarto render``, when Quarto is installed."""

from __future__ import annotations

import shutil
from pathlib import Path

from rsparkhub.agent.documents.process import Job, run
from rsparkhub.agent.documents.rmarkdown import failure_from_r


async def render_quarto(job: Job, text: str) -> Path:
    """``quarto render`` (only when ``quarto`` is on PATH; NOT covered by the tests, which
    run without Quarto): HTML with ``embed-resources`` (Quarto 1.3+), written into the
    private directory. Quarto keeps its supporting files next to the source while it runs
    (``NAME_files``, removed unless it existed before; a ``.quarto`` directory may stay, which
    the agent's scanner skips). A failing R chunk is reported from knitr's ``Quitting from
    lines`` message (label and line); any other failure is ``render_failed`` with the log.
    """
    quarto = shutil.which("quarto", path=job.env.get("PATH"))
    assert quarto is not None
    name = job.source.stem + ".html"
    files_dir = job.source.parent / (job.source.stem + "_files")
    had_files = files_dir.exists()
    argv = [quarto, "render", job.source.name, "--to", "html", "-M", "embed-resources:true",
            "--output-dir", str(job.tmp / "out"), "--output", name]  # fmt: skip
    try:
        rc = await run(argv, cwd=job.source.parent, env=job.env, out=job.out)
    finally:
        if not had_files:
            shutil.rmtree(files_dir, ignore_errors=True)
    produced = job.tmp / "out" / name
    if rc == 0 and produced.is_file():
        return produced
    raise failure_from_r(job.source, text, [], job.out.text(), rc)
