"""Reading a document's source: its executable chunks, and the engine that renders it."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from rsparkhub.agent.documents.results import Engine, RenderError

MARKDOWN_SUFFIXES = {".rmd", ".md", ".markdown", ".qmd"}
SWEAVE_SUFFIXES = {".rnw"}
NOTEBOOK_SUFFIXES = {".ipynb"}

CHUNK_HEADER_RE = re.compile(
    r"^(?P<indent>[ \t>]*)(?P<fence>`{3,})\s*\{(?P<engine>[A-Za-z][\w.]*)(?P<rest>[^}]*)\}\s*$"
)
LABEL_OPTION_RE = re.compile(r"""(?:^|,)\s*label\s*=\s*(["'])(?P<label>.*?)\1""")
HASH_LABEL_RE = re.compile(r"""^\s*#\|\s*label\s*:\s*["']?(?P<label>[^"'\s]+)""")
INLINE_R_RE = re.compile(r"`r[ \t]+[^`]+`")


@dataclass(frozen=True)
class Chunk:
    line: int  # 1-based line of the ```{engine ...} header
    end: int  # 1-based line of the closing fence (last line of the file if unclosed)
    engine: str  # lower case
    label: str | None  # an explicit label (header, label= option or #| label:)


def find_chunks(text: str) -> list[Chunk]:
    """The executable chunks of an R Markdown / Quarto / markdown document, in order.

    Only braced fences count (```` ```{r} ````, ```` ```{python name, echo=FALSE} ````); plain
    ```` ```python ```` fences are code to show, as for knitr and jupytext.
    """
    lines = text.splitlines()
    chunks: list[Chunk] = []
    i = 0
    while i < len(lines):
        m = CHUNK_HEADER_RE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence = m["fence"]
        close = re.compile(rf"^[ \t>]*`{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        label = _header_label(m["rest"])
        if label is None:
            for body_line in lines[i + 1 : j]:
                hm = HASH_LABEL_RE.match(body_line)
                if hm:
                    label = hm["label"]
                    break
                if not body_line.lstrip().startswith("#|"):
                    break
        chunks.append(Chunk(i + 1, min(j, len(lines) - 1) + 1, m["engine"].lower(), label))
        i = j + 1
    return chunks


def _header_label(rest: str) -> str | None:
    rest = rest.strip().lstrip(",").strip()
    first = rest.split(",", 1)[0].strip()
    if first and "=" not in first:
        return first.strip("'\"")
    m = LABEL_OPTION_RE.search(rest)
    return m["label"] if m else None


def has_inline_r(text: str, chunks: list[Chunk]) -> bool:
    """Whether the text outside the chunks has inline R code (```` `r expr` ````)."""
    lines = text.splitlines()
    inside = {n for c in chunks for n in range(c.line, c.end + 1)}
    prose = "\n".join(line for n, line in enumerate(lines, 1) if n not in inside)
    return INLINE_R_RE.search(prose) is not None


def choose_engine(path: Path, text: str | None, search_path: str | None = None) -> Engine:
    """The engine that renders ``path`` (``text``: its content, for markdown documents;
    ``search_path``: the PATH the render's processes get)."""
    suffix = path.suffix.lower()
    if suffix in NOTEBOOK_SUFFIXES:
        return "jupyter"
    if suffix in SWEAVE_SUFFIXES:
        return "knitr-latex"
    if suffix not in MARKDOWN_SUFFIXES:
        raise RenderError(
            "unsupported_file",
            f"Cannot render {path.name}: rendering works for R Markdown (.Rmd), Quarto (.qmd), "
            "markdown (.md), Jupyter notebooks (.ipynb) and Sweave (.Rnw) files.",
        )
    if suffix == ".qmd" and shutil.which("quarto", path=search_path):
        return "quarto"
    text = text or ""
    chunks = find_chunks(text)
    engines = {c.engine for c in chunks}
    if engines == {"python"} and not has_inline_r(text, chunks):
        return "jupyter"
    return "rmarkdown"
