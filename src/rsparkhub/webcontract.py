"""The web client's copy of the wire format, generated: TypeScript types for the messages a
browser sends and receives (from ``protocol.py``'s pydantic models, through their JSON
schema) and the extension table of ``filetypes.py``, written to
``web/src/generated/protocol.ts``. The file is checked in; ``tests/test_web_contract.py``
fails when it no longer matches the models.

    .venv/bin/python -m rsparkhub.webcontract           # rewrite web/src/generated/protocol.ts
    .venv/bin/python -m rsparkhub.webcontract --check   # exit 1 if it is out of date

Owns the translation JSON schema → TypeScript and nothing else: no model is defined here.
Agent-link messages are not for browsers and are left out.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, get_args, get_type_hints

from pydantic import TypeAdapter

from rsparkhub import filetypes, protocol

OUTPUT = Path(__file__).resolve().parents[2] / "web" / "src" / "generated" / "protocol.ts"
COMMAND = ".venv/bin/python -m rsparkhub.webcontract"

HEADER = f"""\
// Generated from src/rsparkhub/protocol.py and src/rsparkhub/filetypes.py by
// src/rsparkhub/webcontract.py — do not edit; run `{COMMAND}`.
// Fields with a default may be missing (optional); dict[str, Any] is Record<string, unknown>.
"""

# The unions written as named TypeScript unions, with their members as interfaces.
UNIONS: tuple[tuple[str, Any], ...] = (
    ("ClientRequest", protocol.ClientRequest),
    ("Event", protocol.Event),
    ("HubMessage", protocol.HubToClient),
)

# Literal aliases written by name: an enum with exactly these values becomes the alias.
ALIASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Language", get_args(filetypes.Language)),
    ("Syntax", get_args(filetypes.Syntax)),
    ("ExecMode", get_args(protocol.ExecMode)),
)

_REF = "#/$defs/"


def render() -> str:
    """The whole generated file."""
    defs: dict[str, dict[str, Any]] = {}
    for _, schema in _union_schemas():
        for key, sub in schema.get("$defs", {}).items():
            if defs.setdefault(key, sub) != sub:
                raise ValueError(f"two different models are named {key}")
    order: list[str] = []  # the models in the order the unions list them
    for _, members in _unions():
        order += [m for m in members if m not in order]
    order += sorted(set(defs) - set(order))
    parts = [HEADER]
    parts += [f"export type {name} = {_literals(values)};\n" for name, values in ALIASES]
    parts += [interface(name, defs[name]) for name in order]
    parts += [
        f"export type {name} =\n" + "\n".join(f"  | {m}" for m in members) + ";\n"
        for name, members in _unions()
    ]
    parts.append(_file_types())
    return "\n".join(parts)


@cache
def _union_schemas() -> tuple[tuple[str, dict[str, Any]], ...]:
    return tuple(
        (name, TypeAdapter(union).json_schema(ref_template=_REF + "{model}"))
        for name, union in UNIONS
    )


def _unions() -> list[tuple[str, tuple[str, ...]]]:
    """Each named union with its members' model names."""
    return [(name, tuple(map(_ref_name, s["oneOf"]))) for name, s in _union_schemas()]


def _ref_name(schema: dict[str, Any]) -> str:
    ref = schema["$ref"]
    assert ref.startswith(_REF), ref
    return str(ref[len(_REF) :])


def _literals(values: Sequence[Any]) -> str:
    return " | ".join(json.dumps(v) for v in values)


def _doc(text: str | None) -> str:
    if not text:
        return ""
    lines = text.replace("*/", "*\\/").splitlines()
    return "/**\n" + "".join(f" * {line}".rstrip() + "\n" for line in lines) + " */\n"


def interface(name: str, schema: dict[str, Any]) -> str:
    """One model as a TypeScript interface (its docstring as the doc comment)."""
    required = set(schema.get("required", ()))
    fields = []
    for field, sub in schema.get("properties", {}).items():
        # the discriminator has a default in Python but is always on the wire
        optional = field not in required and field != "type"
        fields.append(f"  {field}{'?' if optional else ''}: {ts_type(sub)};\n")
    return _doc(schema.get("description")) + f"export interface {name} {{\n{''.join(fields)}}}\n"


def ts_type(schema: dict[str, Any]) -> str:
    """The TypeScript type of one JSON schema (the subset pydantic writes for protocol.py)."""
    if "$ref" in schema:
        return _ref_name(schema)
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        values = tuple(schema["enum"])
        for alias, alias_values in ALIASES:
            if values == alias_values:
                return alias
        return _literals(values)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            members = tuple(ts_type(s) for s in schema[key])
            for union, union_members in _unions():
                if members == union_members:
                    return union
            return " | ".join(members)
    kind = schema.get("type")
    if kind == "string":
        return "string"
    if kind in ("integer", "number"):
        return "number"
    if kind in ("boolean", "null"):
        return str(kind)
    if kind == "array":
        return _array(schema.get("items", {}))
    if kind == "object":
        return _record(schema.get("additionalProperties", True))
    return "unknown"  # Any


def _array(items: dict[str, Any]) -> str:
    inner = ts_type(items)
    return f"Array<{inner}>" if " | " in inner else f"{inner}[]"


def _record(values: dict[str, Any] | bool) -> str:
    return f"Record<string, {'unknown' if isinstance(values, bool) else ts_type(values)}>"


def _file_types() -> str:
    hints = get_type_hints(filetypes.FileType)
    fields = [
        f"  {f.name}: {ts_type(TypeAdapter(hints[f.name]).json_schema())};\n"
        for f in dataclasses.fields(filetypes.FileType)
    ]
    rows = "".join(
        "  { "
        + ", ".join(f"{k}: {json.dumps(v)}" for k, v in dataclasses.asdict(t).items())
        + " },\n"
        for t in filetypes.FILE_TYPES
    )
    return (
        _doc(filetypes.__doc__)
        + "export interface FileType {\n"
        + "".join(fields)
        + "}\n\n"
        + f"export const FILE_TYPES: readonly FileType[] = [\n{rows}];\n"
    )


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
