"""Rendering documents (``rsparkhub.agent.documents``) with the real tools: R, rmarkdown,
knitr, pandoc, reticulate, jupytext, nbclient with the python3 kernel, nbconvert.

Each render checks what a user would see in the working directory afterwards: the source and
its one self-contained output, nothing else (no ``*_files``, no intermediates, no temporary
files), no output at all when the render failed (an older one kept as it was), and no
process of the render left running."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import subprocess
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from rsparkhub.agent.documents import (
    RenderError,
    failure_from_r,
    find_chunks,
    local_references,
    r_in_session_code,
    render,
    session_failure,
)

HAVE_R = shutil.which("Rscript") is not None
needs_r = pytest.mark.skipif(not HAVE_R, reason="R is not installed")

REPORT_RMD = """\
---
title: "Quarterly report"
---

The answer is `r 6 * 7`.

```{r table}
df <- data.frame(city = c("Oslo", "Lima"), temp = c(4.5, 19.25))
df
```

```{r}
Sys.sleep(1)
plot(1:10, main = "a base plot")
```
"""

UNNAMED_BROKEN_RMD = """\
---
title: "T"
---

```{r}
x <- 1
```

```{r}
y <- 2
undefined_fn()
```
"""

NAMED_BROKEN_RMD = """\
# Named

```{r setup}
x <- 1
```

```{r broken, echo=FALSE}
f <- function(v) stop("bad value ", v)
f(3)
```
"""

PY_RMD = """\
---
title: "Python report"
---

Some text.

```{python}
import matplotlib.pyplot as plt
print("hello from python", 6 * 7)
```

```{python figure, echo=FALSE}
plt.plot([1, 4, 9])
plt.title("squares")
plt.show()
```

```{python}
#| label: quiet
#| echo: false
print("shown " + "output")
```
"""

PY_BROKEN_MD = """\
# Python

```{python}
a = 1
```

Text.

```{python}
a / 0
```
"""


def files(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*"))


async def no_children_left() -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        kids = [p for p in psutil.Process().children(recursive=True) if _alive(p)]
        if not kids:
            return True
        await asyncio.sleep(0.05)
    return False


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ====================================================================== R Markdown


@needs_r
async def test_rmd_renders_one_self_contained_html_and_streams_the_log(tmp_path: Path) -> None:
    (tmp_path / "report.Rmd").write_text(REPORT_RMD)
    seen: list[tuple[float, str]] = []
    result = await render(
        tmp_path, "report.Rmd", on_log=lambda ln: seen.append((time.monotonic(), ln))
    )
    assert (result.output, result.format, result.engine) == ("report.html", "html", "rmarkdown")
    html = (tmp_path / "report.html").read_text()
    assert "The answer is 42" in html
    assert "Oslo" in html and "19.25" in html
    assert "Quarterly report" in html
    assert "data:image/png;base64," in html
    assert 'src="report_files' not in html and local_references(html) == []
    assert files(tmp_path) == ["report.Rmd", "report.html"]
    # the log came line by line while R ran: chunk progress a second before pandoc's lines
    lines = [ln for _, ln in seen]
    assert "running chunk table" in lines and "running chunk unnamed-chunk-1" in lines
    first = next(t for t, ln in seen if ln == "running chunk unnamed-chunk-1")
    last = next(t for t, ln in seen if "pandoc" in ln)
    assert last - first > 0.8
    assert "running chunk table" in result.log
    assert await no_children_left()


@needs_r
@pytest.mark.parametrize(
    ("name", "text", "chunk", "line", "words"),
    [
        (
            "unnamed.Rmd",
            UNNAMED_BROKEN_RMD,
            "unnamed-chunk-2",
            9,
            'could not find function "undefined_fn"',
        ),
        ("named.Rmd", NAMED_BROKEN_RMD, "broken", 7, "Error in f(3): bad value 3"),
    ],
    ids=["unnamed", "named"],
)
async def test_broken_r_chunk_names_the_chunk_and_its_line(
    tmp_path: Path, name: str, text: str, chunk: str, line: int, words: str
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(RenderError) as info:
        await render(tmp_path, name)
    e = info.value
    assert (e.code, e.chunk, e.line) == ("chunk_failed", chunk, line)
    assert words in e.message and f'"{chunk}"' in e.message and f"line {line}" in e.message
    assert "Quitting from lines" in e.log
    assert files(tmp_path) == [name]
    assert await no_children_left()


@needs_r
async def test_failed_render_keeps_the_older_output(tmp_path: Path) -> None:
    (tmp_path / "report.Rmd").write_text(NAMED_BROKEN_RMD)
    (tmp_path / "report.html").write_text("<p>older</p>")
    with pytest.raises(RenderError):
        await render(tmp_path, "report.Rmd")
    assert (tmp_path / "report.html").read_text() == "<p>older</p>"
    assert files(tmp_path) == ["report.Rmd", "report.html"]


@needs_r
async def test_inline_r_error_gives_its_line_and_other_errors_are_render_failed(
    tmp_path: Path,
) -> None:
    (tmp_path / "inline.Rmd").write_text(
        '# T\n\nFine `r 1 + 1`.\n\nThen `r stop("inline bad")` here.\n'
    )
    with pytest.raises(RenderError) as info:
        await render(tmp_path, "inline.Rmd")
    assert (info.value.code, info.value.chunk, info.value.line) == ("chunk_failed", None, 5)
    assert "inline bad" in info.value.message
    (tmp_path / "yaml.Rmd").write_text("---\ntitle: [oops\n---\n\ntext\n")
    with pytest.raises(RenderError) as info:
        await render(tmp_path, "yaml.Rmd")
    assert info.value.code == "render_failed" and "yaml" in info.value.message.lower()
    assert files(tmp_path) == ["inline.Rmd", "yaml.Rmd"]


@needs_r
async def test_r_chunks_in_qmd_and_output_elsewhere(tmp_path: Path) -> None:
    if shutil.which("quarto"):
        pytest.skip("quarto renders .qmd when installed")
    (tmp_path / "notes.qmd").write_text(
        '---\ntitle: "Q"\n---\n\n```{r}\n#| label: sum\ncat("total", sum(1:4))\n```\n'
    )
    result = await render(tmp_path, "notes.qmd", output="out/notes-v2.html")
    assert result.output == "out/notes-v2.html"
    assert "total 10" in (tmp_path / "out" / "notes-v2.html").read_text()
    assert files(tmp_path) == ["notes.qmd", "out", "out/notes-v2.html"]


@needs_r
async def test_mixed_r_and_python_chunks_go_through_reticulate(tmp_path: Path) -> None:
    (tmp_path / "mixed.Rmd").write_text(
        "```{r}\nx <- 21\n```\n\n```{python}\nprint('doubled', r.x * 2)\n```\n\n"
        "```{python pyboom}\nraise ValueError('nope')\n```\n"
    )
    with pytest.raises(RenderError) as info:
        await render(tmp_path, "mixed.Rmd")
    assert (info.value.code, info.value.chunk, info.value.line) == ("chunk_failed", "pyboom", 9)
    assert "ValueError" in info.value.message
    (tmp_path / "mixed.Rmd").write_text(
        "```{r}\nx <- 21\n```\n\n```{python}\nprint('doubled', r.x * 2)\n```\n"
    )
    result = await render(tmp_path, "mixed.Rmd")
    assert result.engine == "rmarkdown"
    assert "doubled 42" in (tmp_path / "mixed.html").read_text()


@needs_r
async def test_timeout_kills_the_render_and_what_it_started(tmp_path: Path) -> None:
    (tmp_path / "slow.Rmd").write_text('```{r}\nsystem("sleep 1234.5 &")\nSys.sleep(60)\n```\n')
    started = time.monotonic()
    with pytest.raises(RenderError) as info:
        await render(tmp_path, "slow.Rmd", timeout_s=2)
    assert info.value.code == "timeout"
    assert time.monotonic() - started < 6
    assert files(tmp_path) == ["slow.Rmd"]
    assert await no_children_left()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sleepers = [
            p
            for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] == ["sleep", "1234.5"] and _alive(p)
        ]
        if not sleepers:
            break
        await asyncio.sleep(0.05)
    assert not sleepers


@needs_r
def test_r_in_session_code_renders_in_the_calling_environment(tmp_path: Path) -> None:
    (tmp_path / "doc.Rmd").write_text("# In session\n\nx is `r x`.\n\n```{r}\ny <- x + 1\n```\n")
    code = r_in_session_code(str(tmp_path / "doc.Rmd"), str(tmp_path / "doc.html"))
    script = tmp_path.parent / f"{tmp_path.name}-session.R"
    script.write_text(f'x <- 42\n{code}\ncat("y =", y, "\\n")\ncat(ls(all.names = TRUE), "\\n")\n')
    proc = subprocess.run(["Rscript", str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "x is 42" in (tmp_path / "doc.html").read_text()
    assert "y = 43" in proc.stdout
    assert proc.stdout.splitlines()[-1].split() == ["x", "y"]  # nothing of the renderer left
    assert files(tmp_path) == ["doc.Rmd", "doc.html"]


@needs_r
def test_r_in_session_failure_is_reported(tmp_path: Path) -> None:
    (tmp_path / "doc.Rmd").write_text(NAMED_BROKEN_RMD)
    (tmp_path / "doc.html").write_text("older")
    status = tmp_path.parent / f"{tmp_path.name}-status"
    code = r_in_session_code(str(tmp_path / "doc.Rmd"), str(tmp_path / "doc.html"), str(status))
    proc = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    e = session_failure(str(tmp_path / "doc.Rmd"), str(status), proc.stderr)
    assert e is not None and (e.code, e.chunk, e.line) == ("chunk_failed", "broken", 7)
    assert (tmp_path / "doc.html").read_text() == "older"
    assert files(tmp_path) == ["doc.Rmd", "doc.html"]


# ====================================================================== Python documents


async def test_python_rmd_renders_through_jupyter_with_the_figure_embedded(tmp_path: Path) -> None:
    (tmp_path / "py.Rmd").write_text(PY_RMD)
    logged: list[str] = []
    result = await render(tmp_path, "py.Rmd", on_log=logged.append)
    assert (result.output, result.engine) == ("py.html", "jupyter")
    html = (tmp_path / "py.html").read_text()
    assert "hello from python 42" in html
    assert "<title>Python report</title>" in html
    assert 'src="data:image/png;base64,' in html
    assert "plt.title" not in html  # echo=FALSE hides the code
    assert "shown output" in html and "shown " not in html.replace("shown output", "")
    assert "#|" not in html
    assert local_references(html) == []
    assert files(tmp_path) == ["py.Rmd", "py.html"]
    assert "running chunk figure (line 12)" in logged
    assert "running chunk quiet (line 18)" in logged
    assert await no_children_left()


async def test_failing_python_chunk_names_the_chunk_and_line(tmp_path: Path) -> None:
    (tmp_path / "py.md").write_text(PY_BROKEN_MD)
    (tmp_path / "py.html").write_text("older")
    with pytest.raises(RenderError) as info:
        await render(tmp_path, "py.md")
    e = info.value
    assert (e.code, e.chunk, e.line) == ("chunk_failed", "unnamed-chunk-2", 9)
    assert "ZeroDivisionError" in e.message and "ZeroDivisionError" in e.log
    assert (tmp_path / "py.html").read_text() == "older"
    assert files(tmp_path) == ["py.html", "py.md"]
    assert await no_children_left()


async def test_notebook_renders_and_a_failing_cell_is_named(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Notebook"),
        nbformat.v4.new_code_cell("import os\nprint('cwd is', os.path.basename(os.getcwd()))"),
    ]
    nbformat.write(nb, tmp_path / "nb.ipynb")
    result = await render(tmp_path, "nb.ipynb")
    assert f"cwd is {tmp_path.name}" in (tmp_path / "nb.html").read_text()
    assert result.engine == "jupyter"
    nb.cells.append(nbformat.v4.new_code_cell("raise KeyError('k')"))
    nbformat.write(nb, tmp_path / "nb.ipynb")
    with pytest.raises(RenderError) as info:
        await render(tmp_path, "nb.ipynb", output="nb2.html")
    assert (info.value.code, info.value.chunk, info.value.line) == ("chunk_failed", "cell 3", None)
    assert "KeyError" in info.value.message
    assert files(tmp_path) == ["nb.html", "nb.ipynb"]


async def test_python_timeout_stops_the_kernel_cleanly(tmp_path: Path) -> None:
    (tmp_path / "slow.md").write_text(
        '```{python}\nimport subprocess, time\nsubprocess.Popen(["sleep", "4321.5"])\n'
        "time.sleep(60)\n```\n"
    )
    problems: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: problems.append(ctx))
    with pytest.raises(RenderError) as info:
        await render(tmp_path, "slow.md", timeout_s=2.5)
    assert info.value.code == "timeout"
    del info  # (its traceback would keep a leaked task alive, hiding it from the check)
    assert files(tmp_path) == ["slow.md"]
    assert await no_children_left()
    await asyncio.sleep(1.2)  # nbclient's kernel-alive poll would fail within a second
    gc.collect()
    assert problems == []
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] == ["sleep", "4321.5"] and _alive(p)
    ]


# ====================================================================== refusals


@needs_r
async def test_missing_r_or_rmarkdown(tmp_path: Path) -> None:
    (tmp_path / "doc.Rmd").write_text("# hi\n\n`r 1`\n")
    empty = tmp_path.parent / f"{tmp_path.name}-lib"
    empty.mkdir()
    with pytest.raises(RenderError) as info:
        await render(
            tmp_path,
            "doc.Rmd",
            env={**os.environ, "R_LIBS_SITE": str(empty), "R_LIBS_USER": str(empty)},
        )
    assert info.value.code == "rmarkdown_not_installed" and "install.packages" in info.value.message
    with pytest.raises(RenderError) as info:
        await render(tmp_path, "doc.Rmd", env={**os.environ, "PATH": str(empty)})
    assert info.value.code == "r_not_installed"
    assert files(tmp_path) == ["doc.Rmd"]


async def test_rnw_needs_latex(tmp_path: Path) -> None:
    (tmp_path / "doc.Rnw").write_text(
        "\\documentclass{article}\n\\begin{document}\n<<a>>=\n1 + 1\n@\n\\end{document}\n"
    )
    if shutil.which("pdflatex") and HAVE_R:
        result = await render(tmp_path, "doc.Rnw")
        assert (result.output, result.format, result.engine) == ("doc.pdf", "pdf", "knitr-latex")
        assert (tmp_path / "doc.pdf").read_bytes().startswith(b"%PDF")
        assert files(tmp_path) == ["doc.Rnw", "doc.pdf"]
    else:
        with pytest.raises(RenderError) as info:
            await render(tmp_path, "doc.Rnw")
        assert info.value.code == "latex_not_installed"
        assert "LaTeX" in info.value.message and "texlive" in info.value.message
        assert files(tmp_path) == ["doc.Rnw"]


@pytest.mark.parametrize(
    ("path", "output", "code"),
    [
        ("data.csv", None, "unsupported_file"),
        ("missing.Rmd", None, "not_found"),
        ("../elsewhere.Rmd", None, "path_outside_workdir"),
        ("doc.Rmd", "../doc.html", "path_outside_workdir"),
        ("doc.Rmd", "/tmp/doc.html", "path_outside_workdir"),
        ("doc.Rmd", "link/doc.html", "path_outside_workdir"),
        ("doc.Rmd", "doc.pdf", "bad_output"),
    ],
)
async def test_refusals(tmp_path: Path, path: str, output: str | None, code: str) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "data.csv").write_text("a,b\n1,2\n")
    (wd / "doc.Rmd").write_text("# hi\n")
    (tmp_path / "elsewhere.Rmd").write_text("# hi\n")
    os.symlink(tmp_path, wd / "link")
    with pytest.raises(RenderError) as info:
        await render(wd, path, output=output)
    assert info.value.code == code
    assert sorted(os.listdir(wd)) == ["data.csv", "doc.Rmd", "link"]
    assert sorted(os.listdir(tmp_path)) == ["elsewhere.Rmd", "wd"]


# ====================================================================== helpers


def test_find_chunks() -> None:
    text = (
        "```{r}\n1\n```\n\n```{r named, echo=FALSE}\n2\n```\n\n"
        '```{r, label = "opt"}\n3\n```\n\n````{python}\n#| label: hash\n```\n4\n````\n\n'
        "```python\nnot a chunk\n```\n\n```{{r}}\nnot executed\n```\n"
    )
    chunks = find_chunks(text)
    assert [(c.line, c.end, c.engine, c.label) for c in chunks] == [
        (1, 3, "r", None),
        (5, 7, "r", "named"),
        (9, 11, "r", "opt"),
        (13, 17, "python", "hash"),
    ]


def test_chunk_failure_from_knitr_message_alone() -> None:
    # what a failure looks like without the status file (quarto, or R killed mid-way):
    # knitr's message in the format of 1.43+, and in the format of 1.42
    text = NAMED_BROKEN_RMD
    newer = "Quitting from lines 8-10 [broken] (doc.Rmd)\nError in f(3):\n! bad value 3\n"
    e = failure_from_r(Path("doc.Rmd"), text, [], newer)
    assert (e.code, e.chunk, e.line) == ("chunk_failed", "broken", 7)
    e = failure_from_r(Path("doc.Rmd"), text, [], "Quitting from lines 8-10 (doc.Rmd) \n")
    assert (e.code, e.chunk, e.line) == ("chunk_failed", None, 7)
    e = failure_from_r(Path("doc.Rmd"), text, [], "Error: pandoc document conversion failed\n", 1)
    assert e.code == "render_failed" and "pandoc document conversion failed" in e.message


def test_local_references() -> None:
    html = """<html><head><link rel="stylesheet" href="site_libs/b.css">
    <link rel="icon" href="data:image/png;base64,AAAA"><script src="https://cdn/x.js"></script>
    <script>var s = '<img src="inside-script.png">';</script></head>
    <body><img src="data:image/png;base64,AAAA"><img src="report_files/figure-html/a.png">
    <a href="other.html">a link is fine</a><img src="#x"><iframe src="file:///etc/passwd"></iframe>
    </body></html>"""
    assert local_references(html) == [
        "site_libs/b.css",
        "report_files/figure-html/a.png",
        "file:///etc/passwd",
    ]


def test_the_render_log_leaves_out_pandocs_command_line() -> None:
    """rmarkdown (quiet = FALSE) echoes the pandoc call; the render log sent to clients
    leaves it out and keeps knitr's progress and the result line."""
    from rsparkhub.agent.renders import is_pandoc_echo

    assert is_pandoc_echo(
        "/usr/bin/pandoc +RTS -K512m -RTS report.knit.md --to html4 --from markdown+autolink"
    )
    assert is_pandoc_echo('"C:/RStudio/bin/pandoc.exe" +RTS -K512m -RTS r.knit.md')
    assert is_pandoc_echo("pandoc report.utf8.md --to html4 --output report.html")
    for kept in ("processing file: pandoc.Rmd", "output file: report.knit.md",
                 "Output created: report.html", "Error: pandoc document conversion failed"):  # fmt: skip
        assert not is_pandoc_echo(kept), kept
