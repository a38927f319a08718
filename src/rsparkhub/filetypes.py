"""What a workspace file is, by its extension: the one table the hub, the agent, the Python
client and the web client (``web/src/generated/protocol.ts``, generated from it) share.

* ``language`` — the kernel a script runs in, or a document's default chunk language;
* ``document`` — rendered (knit) rather than run or sourced;
* ``source`` — text the IDE opens in its editor (everything else goes to the Viewer);
* ``syntax`` — the editor's highlighting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Language = Literal["r", "python", "bash"]
LANGUAGES: tuple[Language, ...] = ("r", "python", "bash")
Syntax = Literal["r", "python", "bash", "markdown", "sql", "latex", "json", "text"]


@dataclass(frozen=True)
class FileType:
    extension: str  # lower case, with the dot
    syntax: Syntax
    language: Language | None = None
    document: bool = False
    source: bool = True


FILE_TYPES: tuple[FileType, ...] = (
    FileType(".r", "r", "r"),
    FileType(".py", "python", "python"),
    FileType(".sh", "bash", "bash"),
    FileType(".bash", "bash", "bash"),
    FileType(".rmd", "markdown", "r", document=True),
    FileType(".qmd", "markdown", "r", document=True),
    FileType(".rnw", "latex", "r", document=True),
    FileType(".md", "markdown", None, document=True),
    FileType(".ipynb", "json", "python", document=True, source=False),
    FileType(".sql", "sql"),
    FileType(".txt", "text"),
)
_BY_EXTENSION = {t.extension: t for t in FILE_TYPES}


def extension(path: str) -> str:
    """The lower-case extension of a path's last name ('' for none or a dotfile)."""
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def file_type(path: str) -> FileType | None:
    return _BY_EXTENSION.get(extension(path))


def language_for_path(path: str) -> Language | None:
    """The language a file runs in (a document: its default chunk language)."""
    t = file_type(path)
    return t.language if t else None


def is_document(path: str) -> bool:
    t = file_type(path)
    return t is not None and t.document


def is_source(path: str) -> bool:
    t = file_type(path)
    return t is not None and t.source
