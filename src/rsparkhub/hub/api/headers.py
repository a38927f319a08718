"""Response headers that carry user-chosen text. Header values are Latin-1 on the wire, so
a name such as ``数据分析.zip`` cannot go in as is (Starlette's encoding of it fails: a 500);
it travels percent-encoded as RFC 6266 / RFC 8187 ``filename*`` with an ASCII fallback."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9 !#$&+,.;=@^_`{}~()\[\]-]")


def attachment(filename: str, fallback: str = "download") -> str:
    """A ``Content-Disposition: attachment`` value for ``filename``: ``filename=`` with an
    ASCII approximation (accents dropped, other characters as ``_``; ``fallback`` for a
    name with nothing ASCII in it) and, when that differs, ``filename*=UTF-8''…`` with the
    exact name."""
    stem, dot, ext = filename.rpartition(".")
    if not stem:  # no extension, or a name such as ".Rprofile"
        stem, dot, ext = filename, "", ""
    ascii_stem, ascii_ext = _ascii(stem), _ascii(ext)
    if not ascii_stem.strip("_"):
        ascii_stem = fallback
    ascii_name = ascii_stem + (f".{ascii_ext}" if dot and ascii_ext.strip("_") else "")
    value = f'attachment; filename="{ascii_name}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


def _ascii(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _UNSAFE_ASCII.sub("_", plain).strip(" .")
