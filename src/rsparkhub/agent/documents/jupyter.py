"""Python documents (R Markdown / Quarto with only Python chunks) and notebooks: jupytext reads
the document as a notebook, nbclient runs it in a fresh ``python3`` kernel, nbconvert writes
one HTML with the images embedded, through nbconvert's ``lab`` template minus what it loads from
the web (``OFFLINE_TEMPLATE``): math is typeset by the embedded KaTeX (``katex.py``) instead of
MathJax from a CDN; require.js, the widget manager and mermaid (CDN scripts too) are left out,
so a widget's saved state or a mermaid diagram shows as its text.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from rsparkhub.agent.documents.katex import katex_head
from rsparkhub.agent.documents.process import Job
from rsparkhub.agent.documents.results import RenderError
from rsparkhub.agent.documents.source import Chunk, find_chunks


def _title_cells(nb: Any) -> tuple[str | None, list[Any]]:
    """Drop the YAML header (a raw first cell) of a jupytext-read document and return its
    title and the markdown cells to show it (title, author, date), as rmarkdown would."""
    import nbformat

    if not nb.cells or nb.cells[0].cell_type != "raw" or not nb.cells[0].source.startswith("---"):
        return None, []
    header = nb.cells.pop(0).source
    try:
        import yaml

        meta = yaml.safe_load(header.strip().strip("-").strip()) or {}
    except Exception:
        return None, []
    if not isinstance(meta, dict):
        return None, []
    title = meta.get("title")
    parts = [f"# {title}"] if isinstance(title, str) and title else []
    for key in ("subtitle", "author", "date"):
        value = meta.get(key)
        if isinstance(value, str | int | float) and str(value):
            parts.append(f"*{value}*")
    cells = [nbformat.v4.new_markdown_cell("\n\n".join(parts))] if parts else []
    return (title if isinstance(title, str) else None), cells


OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{{ resources.rsparkhub_math }}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


async def render_jupyter(job: Job, text: str | None) -> Path:
    try:
        import jupytext
        import nbformat
        from jinja2 import DictLoader
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
        from jupyter_client.manager import AsyncKernelManager
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, DeadKernelError
        from nbconvert import HTMLExporter
        from traitlets.config import Config
    except ImportError as e:
        raise RenderError(
            "jupyter_not_installed",
            f"Rendering Python documents needs jupytext, nbclient and nbconvert ({e}).",
        ) from None
    try:
        await asyncio.to_thread(KernelSpecManager().get_kernel_spec, "python3")
    except NoSuchKernel:
        raise RenderError(
            "kernel_not_installed",
            "The python3 Jupyter kernel is not installed (pip install ipykernel).",
        ) from None

    notebook = text is None
    if notebook:
        nb = await asyncio.to_thread(nbformat.read, job.source, as_version=4)
        title, head = None, list[Any]()
        chunks: list[Chunk] = []
    else:
        nb = jupytext.reads(text or "", fmt="Rmd")
        title, head = _title_cells(nb)
        chunks = [c for c in find_chunks(text or "") if c.engine == "python"]
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    if not notebook:
        for index in code_cells:
            _apply_hash_options(nb.cells[index])
    if not notebook and len(code_cells) != len(chunks):
        chunks = []  # jupytext split the document differently: no line numbers

    labels: dict[int, tuple[str, int | None]] = {}  # cell index -> (label, source line)
    unnamed = 0
    for k, index in enumerate(code_cells):
        chunk = chunks[k] if chunks else None
        label = nb.cells[index].metadata.get("name") or (chunk.label if chunk else None)
        if notebook:
            label = f"cell {index + 1}"
        elif not label:
            unnamed += 1
            label = f"unnamed-chunk-{unnamed}"
        labels[index] = (str(label), chunk.line if chunk else None)

    env = dict(job.env)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.pop("PYDEVD_USE_FRAME_EVAL", None)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=None,
        allow_errors=False,
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(job.source.parent)}},
    )
    # IPC sockets in the private directory, as the agent's own kernels (no TCP port)
    ipc = str(job.tmp / "k")
    if len(ipc) < 96:
        client.km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=ipc)
    failure: RenderError | None = None
    try:
        async with client.async_setup_kernel(env=env):
            for index in code_cells:
                cell = nb.cells[index]
                if cell.metadata.get("eval") is False:
                    continue
                label, line = labels[index]
                job.out.line(f"running chunk {label}" + (f" (line {line})" if line else ""))
                try:
                    await client.async_execute_cell(cell, index)
                except (asyncio.CancelledError, DeadKernelError):
                    # (nbclient turns our cancellation into DeadKernelError)
                    _cancel_kernel_polls(client)
                    raise
                except CellExecutionError as e:
                    for ln in _strip_ansi(str(e)).splitlines():
                        job.out.line(ln)
                    what = f"Cell {index + 1}" if notebook else f'Chunk "{label}"'
                    where = f" (line {line})" if line else ""
                    failure = RenderError(
                        "chunk_failed",
                        f"{what}{where} of {job.source.name} failed: {e.ename}: {e.evalue}",
                        chunk=label,
                        line=line,
                    )
                    break
                for output in cell.get("outputs", []):
                    if output.get("output_type") == "stream":
                        for ln in str(output.get("text", "")).splitlines():
                            job.out.line(ln)
    except DeadKernelError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from None  # nbclient's reaction to our cancellation
        failure = RenderError(
            "render_failed",
            f"The Python kernel died while rendering {job.source.name} (out of memory?).",
        )
    except RuntimeError as e:  # the kernel did not start
        failure = RenderError("render_failed", f"Could not run {job.source.name}: {e}")
    if failure is not None:
        failure.log = job.out.text()
        raise failure

    nb.cells[0:0] = head
    config = Config()
    config.TagRemovePreprocessor.enabled = True
    config.TagRemovePreprocessor.remove_cell_tags = {"remove_cell"}
    config.TagRemovePreprocessor.remove_input_tags = {"remove_input"}
    config.TagRemovePreprocessor.remove_all_outputs_tags = {"remove_output"}
    config.HTMLExporter.embed_images = True
    config.HTMLExporter.exclude_input_prompt = True
    config.HTMLExporter.exclude_output_prompt = True
    resources: dict[str, Any] = {
        "metadata": {"path": str(job.source.parent), "name": title or job.source.stem}
    }

    def export() -> Path:
        # (no KaTeX installed: no math renderer rather than one from the internet)
        resources["rsparkhub_math"] = katex_head(delimiters=True) or ""
        exporter = HTMLExporter(
            config=config,
            extra_loaders=[DictLoader({"rsparkhub.html.j2": OFFLINE_TEMPLATE})],
            template_file="rsparkhub.html.j2",
        )
        body, _ = exporter.from_notebook_node(nb, resources=resources)
        produced = job.tmp / (job.source.stem + ".html")
        produced.write_text(body, encoding="utf-8")
        return produced

    return await asyncio.to_thread(export)


HASH_OPTION_RE = re.compile(r"^#\|\s*(?P<key>[\w.-]+)\s*:\s*(?P<value>.*?)\s*$")
HASH_TAGS = {"echo": "remove_input", "include": "remove_cell", "output": "remove_output"}


def _apply_hash_options(cell: Any) -> None:
    """Quarto-style ``#| key: value`` lines at the top of a chunk (jupytext keeps them as
    code): take them out of the code shown and apply ``echo``/``include``/``output``/``eval``
    ``false`` as the ``{python echo=FALSE}`` header options are applied."""
    lines = cell.source.split("\n")
    n = 0
    while n < len(lines) and (m := HASH_OPTION_RE.match(lines[n])):
        value = m["value"].strip("'\"").lower()
        if value == "false" and m["key"] in HASH_TAGS:
            tags = cell.metadata.setdefault("tags", [])
            if HASH_TAGS[m["key"]] not in tags:
                tags.append(HASH_TAGS[m["key"]])
        elif value == "false" and m["key"] == "eval":
            cell.metadata["eval"] = False
        elif m["key"] == "label" and not cell.metadata.get("name"):
            cell.metadata["name"] = m["value"].strip("'\"")
        n += 1
    cell.source = "\n".join(lines[n:])


def _cancel_kernel_polls(client: Any) -> None:
    """Cancel the kernel-alive poll ``async_execute_cell`` leaves running when it is cancelled
    (nbclient 0.11 cancels it only when the cell completes or the kernel died by itself; left
    alone it fails with an unretrieved AssertionError once the kernel is cleaned up)."""
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if (
            getattr(coro, "__qualname__", "").endswith("_async_poll_kernel_alive")
            and frame is not None
            and frame.f_locals.get("self") is client
        ):
            task.cancel()


ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)
