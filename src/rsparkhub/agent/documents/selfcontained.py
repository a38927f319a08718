"""The self-contained check: which local files a rendered HTML document would still load."""

from __future__ import annotations

import html.parser
import re
from pathlib import Path


class _RefFinder(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "src" or (tag == "link" and name == "href"):
                if _is_local(value):
                    self.refs.append(value)

    handle_startendtag = handle_starttag


SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _is_local(url: str) -> bool:
    url = url.strip()
    if not url or url.startswith(("#", "//")):
        return False
    if SCHEME_RE.match(url):
        return url.lower().startswith("file:")
    return True


def local_references_of(path: Path) -> list[str]:
    return local_references(path.read_text(encoding="utf-8", errors="replace"))


def local_references(html_text: str) -> list[str]:
    """The local files an HTML document loads (``src=`` of any element, ``<link href>``):
    data:, http(s):, protocol-relative and fragment URLs are fine, anything else is a file
    that would be missing once the HTML is downloaded. Script and style bodies are not
    searched (they are text to the parser)."""
    finder = _RefFinder()
    finder.feed(html_text)
    finder.close()
    return list(dict.fromkeys(finder.refs))
