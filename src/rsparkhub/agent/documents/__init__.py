"""Rendering a document of the working directory to one self-contained file next to it.

``await render(workdir, "reports/q3.Rmd")`` writes ``reports/q3.html`` and returns a
``RenderResult``; a failure raises ``RenderError`` whose ``code`` says what to do about it
(``chunk_failed`` names the chunk and its line in the source). Which engine renders a file:

* ``.Rmd``/``.md``/``.qmd`` with R chunks (or inline R, or no chunks at all): rmarkdown, in a
  clean ``Rscript`` process like RStudio's Knit: a new environment, the working directory of
  the code is the source file's directory, the document's own HTML output format (its YAML
  options kept) with ``self_contained = TRUE`` forced, ``html_document`` if it declares none.
  Math is typeset by KaTeX embedded in the HTML (``katex``), not MathJax from a CDN, unless
  the document asks for a method that needs no script (``math_method: mathml``, ``gladtex``,
  ``r-katex``) or no math support (``mathjax: null``); ``ioslides_presentation`` accepts only
  MathJax and keeps it (it then needs the internet for math).
  Python chunks mixed with R chunks run through knitr's python engine (reticulate), with
  ``RETICULATE_PYTHON`` set to the ``python3`` kernel's interpreter unless the caller set it.
* ``.Rmd``/``.md``/``.qmd`` whose chunks are all ```` ```{python} ````, and ``.ipynb``:
  jupytext reads the document as a notebook, nbclient runs it in a fresh ``python3`` kernel
  (working directory: the file's directory), nbconvert writes one HTML with the images
  embedded. Chunk options jupytext understands apply (``echo=FALSE`` hides the code,
  ``include=FALSE`` the cell, ``results='hide'`` the output, ``eval=FALSE`` skips the cell),
  and so do Quarto's ``#| echo: false``, ``#| include: false``, ``#| output: false``,
  ``#| eval: false`` lines. Math in markdown cells (``$…$``, ``$$…$$``, ``\\(…\\)``,
  ``\\[…\\]``, ``\\begin{equation}``…) is typeset by the same embedded KaTeX.
* ``.qmd`` when ``quarto`` is on PATH: ``quarto render`` (see ``render_quarto``).
* ``.Rnw``: ``knitr::knit`` then ``tools::texi2pdf`` → PDF, if ``pdflatex`` is installed.

Only the final output appears in the working directory: everything is rendered in a
temporary directory outside it (rmarkdown's ``intermediates_dir``, knitr's figures, R's and
pandoc's ``TMPDIR``), then copied next to the target under the working directory's temp
prefix (which the agent's scanner skips) and renamed over the target. On failure nothing is
written and an older output stays as it was.

A render's processes are its own: ``Rscript`` runs in a new process group, which is killed
when the render ends (on success too, so a chunk's background child does not outlive it),
times out or is cancelled; the Python kernel is shut down the same way.

``r_in_session_code`` is the other mode: R code the agent runs in the user's R kernel, which
renders with the session's global environment (objects of the session visible to the
document, objects the document creates left in the session).

One module per job: ``source`` reads a document (chunks, engine); ``pipeline`` is ``render``;
``process`` runs a render's commands and keeps its log; ``rmarkdown`` (R Markdown, Sweave,
the in-session code, R failures), ``quarto`` and ``jupyter`` are the engines;
``katex`` embeds the machine's KaTeX so math renders offline; ``selfcontained`` checks the
HTML; ``results`` has what a render returns or raises. Import
from the package (the names below), not from its modules.
"""

from rsparkhub.agent.documents.pipeline import render
from rsparkhub.agent.documents.results import Engine, Format, RenderError, RenderResult
from rsparkhub.agent.documents.rmarkdown import (
    failure_from_r,
    katex_arguments,
    r_in_session_code,
    session_failure,
)
from rsparkhub.agent.documents.selfcontained import local_references
from rsparkhub.agent.documents.source import Chunk, choose_engine, find_chunks

__all__ = [
    "Chunk",
    "Engine",
    "Format",
    "RenderError",
    "RenderResult",
    "choose_engine",
    "failure_from_r",
    "find_chunks",
    "katex_arguments",
    "local_references",
    "r_in_session_code",
    "render",
    "session_failure",
]
