"""What a render returns (``RenderResult``) or raises (``RenderError``), and its engines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Engine = Literal["rmarkdown", "jupyter", "quarto", "knitr-latex"]
Format = Literal["html", "pdf"]


@dataclass(frozen=True)
class RenderResult:
    output: str  # workdir-relative path of the rendered file
    format: Format
    engine: Engine
    log: str
    duration_s: float


class RenderError(Exception):
    """A render that produced nothing.

    ``code`` is machine-readable: ``not_found``, ``path_outside_workdir``, ``bad_output``,
    ``unsupported_file``, ``r_not_installed``, ``rmarkdown_not_installed``,
    ``pandoc_not_installed``, ``latex_not_installed``, ``jupyter_not_installed``,
    ``kernel_not_installed``, ``chunk_failed``, ``render_failed``, ``not_self_contained``,
    ``timeout``. ``message`` is a sentence for the user. For ``chunk_failed``, ``chunk`` is
    the chunk's label (knitr's ``unnamed-chunk-N`` for unnamed chunks, ``cell N`` in a
    notebook, None for inline R code) and ``line`` the 1-based line of the source where the
    chunk starts (its ```` ```{r} ```` line) or where the failing inline code is.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        chunk: str | None = None,
        line: int | None = None,
        log: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.chunk = chunk
        self.line = line
        self.log = log
