"""Workspace-relative file paths and names: the rules, in one place. Every path a client or
an agent names goes through ``clean_path`` (the protocol's ``RelPath`` type, the hub's
routes) before it touches the database or a disk."""

from __future__ import annotations

import unicodedata


class PathError(ValueError):
    """A path or name that breaks a rule; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


MAX_PATH_CHARS = 1024
MAX_NAME_BYTES = 255


def clean_path(raw: str) -> str:
    """Return the normalised relative path, or raise ``PathError`` saying what is wrong."""
    if not isinstance(raw, str) or raw == "":
        raise PathError("invalid_path", "A file path is required.")
    if len(raw) > MAX_PATH_CHARS:
        raise PathError("invalid_path", f"Paths are limited to {MAX_PATH_CHARS} characters.")
    if "\x00" in raw:
        raise PathError("invalid_path", "Paths may not contain NUL characters.")
    if any(unicodedata.category(c) == "Cc" for c in raw):
        raise PathError("invalid_path", "Paths may not contain control characters.")
    if "\\" in raw:
        raise PathError("invalid_path", "Use '/' to separate folders, not '\\'.")
    if raw.startswith("/"):
        raise PathError(
            "invalid_path", "Paths are relative to the workspace; drop the leading '/'."
        )
    if raw.endswith("/"):
        raise PathError(
            "invalid_path", f"'{raw}' ends with '/': give a file name after the last folder."
        )
    if "//" in raw:
        raise PathError("invalid_path", f"'{raw}' has an empty folder name ('//').")
    # One spelling per name: "é" typed as one or two code points is the same file.
    raw = unicodedata.normalize("NFC", raw)
    parts = [p for p in raw.split("/") if p != "."]
    if not parts:
        raise PathError("invalid_path", "A file path is required.")
    for part in parts:
        if part == "..":
            raise PathError("invalid_path", "Paths may not contain '..'.")
        if len(part.encode()) > MAX_NAME_BYTES:
            raise PathError(
                "invalid_path", f"File and folder names are limited to {MAX_NAME_BYTES} bytes."
            )
        if not part.strip():
            raise PathError("invalid_path", "File and folder names may not be blank.")
        if part != part.strip():
            raise PathError("invalid_path", "Names may not start or end with spaces.")
    return "/".join(parts)


def clean_name(raw: str, what: str = "name") -> str:
    """Project and workspace names: 1-128 printable characters, no slash."""
    name = (raw or "").strip()
    if not name:
        raise PathError("invalid_name", f"The {what} may not be empty.")
    if len(name) > 128:
        raise PathError("invalid_name", f"The {what} is limited to 128 characters.")
    if "/" in name or any(unicodedata.category(c) == "Cc" for c in name):
        raise PathError("invalid_name", f"The {what} may not contain '/' or control characters.")
    return name
