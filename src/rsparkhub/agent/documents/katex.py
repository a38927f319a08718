"""Math in rendered HTML without the internet: KaTeX as the machine ships it (Debian's
``libjs-katex``, ``/usr/share/javascript/katex``, whose ``fonts`` link to ``fonts-katex``),
embedded in the document.

``katex_head()`` is the one block every engine adds: KaTeX's CSS with its fonts as data URIs
(WOFF2 only, which every browser the IDE supports reads: a third of the size of all three
formats), ``katex.min.js``, KaTeX's auto-render, and a script that typesets on load —

* pandoc's math (``--katex``: ``<span class="math inline|display">TeX</span>``), always;
* with ``delimiters=True`` (notebooks: nbconvert leaves ``$…$``, ``$$…$$``, ``\\(…\\)``,
  ``\\[…\\]`` and ``\\begin{equation}…`` in the markdown cells' text), text between
  delimiters as Jupyter's MathJax would, skipping ``pre``/``code`` (so outputs stay literal).

``write_pandoc_filter(directory)`` writes that block and a Lua filter adding it at the end of
a document's body when pandoc found math in it (R Markdown). Nothing here touches the
network; when KaTeX is not installed ``katex_dir()`` is None and documents keep the
renderer's own math settings.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from pathlib import Path

# Where the machine's KaTeX may be (the session images install the Debian/Ubuntu package).
KATEX_DIRS: tuple[Path, ...] = (Path("/usr/share/javascript/katex"),)

HEAD_FILE = "katex-head.html"
FILTER_FILE = "katex-math.lua"

_FONT_FACE_SRC_RE = re.compile(r"src:(?P<list>[^;}]+)")
_URL_RE = re.compile(r"url\((?P<url>[^)]+)\)\s*format\((?P<fmt>[^)]+)\)")

# The environments KaTeX typesets in display mode when they stand alone (its documentation's
# list for auto-render), after the dollar and bracket forms Jupyter uses.
_DELIMITERS = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "\\[", "right": "\\]", "display": True},
    {"left": "$", "right": "$", "display": False},
    {"left": "\\(", "right": "\\)", "display": False},
    *(
        {"left": f"\\begin{{{env}}}", "right": f"\\end{{{env}}}", "display": True}
        for env in (
            "equation",
            "equation*",
            "align",
            "align*",
            "alignat",
            "alignat*",
            "gather",
            "gather*",
            "multline",
            "multline*",
            "CD",
        )  # fmt: skip
    ),
]

_TYPESET = """(function () {
  var delimiters = DELIMITERS;
  function typeset() {
    var options = {throwOnError: false};
    var spans = document.querySelectorAll("span.math");
    for (var i = 0; i < spans.length; i++) {
      var span = spans[i];
      if (span.querySelector(".katex")) continue;
      options.displayMode = span.classList.contains("display");
      katex.render(span.textContent, span, options);
    }
    if (delimiters && window.renderMathInElement) {
      renderMathInElement(document.body, {delimiters: delimiters, throwOnError: false,
                                          ignoredClasses: ["katex"]});
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", typeset);
  else typeset();
})();"""


def katex_dir() -> Path | None:
    """The installed KaTeX's directory (``katex.min.js``, ``katex.min.css``, ``fonts/``), or
    None."""
    for d in KATEX_DIRS:
        if (d / "katex.min.js").is_file() and (d / "katex.min.css").is_file():
            return d
    return None


def _embedded_css(directory: Path) -> str:
    """``katex.min.css`` with each ``@font-face`` reduced to its WOFF2 file as a data URI (the
    first format present if a face has no WOFF2)."""
    css = (directory / "katex.min.css").read_text(encoding="utf-8")

    def one_face(m: re.Match[str]) -> str:
        sources = [(u["url"].strip("'\""), u["fmt"].strip("'\"")) for u in _URL_RE.finditer(m[0])]
        present = [(url, fmt) for url, fmt in sources if (directory / url).is_file()]
        if not present:
            return m[0]
        url, fmt = next(((u, f) for u, f in present if f == "woff2"), present[0])
        data = base64.b64encode((directory / url).read_bytes()).decode("ascii")
        return f"src:url(data:font/{fmt};base64,{data}) format('{fmt}')"

    return _FONT_FACE_SRC_RE.sub(one_face, css)


def _inline_script(source: str) -> str:
    # an inline script ends at the first "</script", whatever the JavaScript means by it
    return "<script>" + re.sub(r"</(script)", r"<\\/\1", source, flags=re.IGNORECASE) + "</script>"


@functools.cache
def katex_head(*, delimiters: bool = False) -> str | None:
    """The HTML (style and scripts) that typesets a document's math offline, or None when
    KaTeX is not installed. Cached: the files are the package's and do not change under a
    running agent."""
    directory = katex_dir()
    if directory is None:
        return None
    scripts = [(directory / "katex.min.js").read_text(encoding="utf-8")]
    auto_render = directory / "contrib" / "auto-render.min.js"
    if not auto_render.is_file():
        auto_render = directory / "contrib" / "auto-render.js"  # Debian ships it unminified
    if delimiters and auto_render.is_file():
        scripts.append(auto_render.read_text(encoding="utf-8"))
    scripts.append(_TYPESET.replace("DELIMITERS", json.dumps(_DELIMITERS if delimiters else None)))
    return (
        "<!-- KaTeX (typesets this document's math; embedded from the machine's copy) -->\n"
        f"<style>{_embedded_css(directory)}</style>\n"
        + "\n".join(_inline_script(s) for s in scripts)
        + "\n"
    )


_LUA_FILTER = """-- rsparkhub: add the embedded KaTeX at the end of the body of a document with math
local found = false
function Math(m)
  found = true
  return nil
end
function Pandoc(doc)
  if found then
    local f = io.open(HEAD, "r")
    if f then
      doc.blocks:insert(pandoc.RawBlock("html", f:read("a")))
      f:close()
    end
  end
  return doc
end
"""


def write_pandoc_filter(directory: Path) -> Path | None:
    """Write the KaTeX block and the Lua filter that adds it into ``directory``; return the
    filter's path (None when KaTeX is not installed). The filter runs after pandoc read the
    document, so a document without math gets nothing."""
    head = katex_head()
    if head is None:
        return None
    head_path = directory / HEAD_FILE
    head_path.write_text(head, encoding="utf-8")
    lua = directory / FILTER_FILE
    lua.write_text(
        _LUA_FILTER.replace("HEAD", json.dumps(str(head_path), ensure_ascii=False), 1),
        encoding="utf-8",
    )
    return lua
