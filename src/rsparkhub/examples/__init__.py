"""Example workspaces shipped with the hub: each folder here is one example, its files
copied into a new workspace (``POST /api/projects/{id}/workspaces`` with ``example``).
``example.toml`` in a folder gives its title and description (and is not copied)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MANIFEST = "example.toml"


@dataclass(frozen=True)
class Example:
    name: str
    title: str
    description: str
    folder: Path

    def paths(self) -> list[str]:
        """The workspace path of every file of the example, sorted."""
        return [
            p.relative_to(self.folder).as_posix()
            for p in sorted(self.folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST and "__pycache__" not in p.parts
        ]

    def files(self) -> list[tuple[str, bytes]]:
        """(workspace path, content) of every file of the example, sorted."""
        return [(path, (self.folder / path).read_bytes()) for path in self.paths()]


def examples() -> list[Example]:
    out = []
    for folder in sorted(ROOT.iterdir()):
        manifest = folder / MANIFEST
        if folder.is_dir() and manifest.is_file():
            meta = tomllib.loads(manifest.read_text(encoding="utf-8"))
            out.append(
                Example(
                    name=folder.name,
                    title=str(meta.get("title") or folder.name),
                    description=str(meta.get("description") or ""),
                    folder=folder,
                )
            )
    return out


def example(name: str) -> Example | None:
    return next((e for e in examples() if e.name == name), None)
