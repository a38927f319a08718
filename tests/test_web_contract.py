"""The web client's wire types and extension table (``web/src/generated/protocol.ts``) are
generated from ``protocol.py`` and ``filetypes.py`` by ``rsparkhub.webcontract``; the
checked-in file must be what the generator writes from today's models."""

from __future__ import annotations

import difflib
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from rsparkhub import webcontract
from rsparkhub.filetypes import Language


def test_the_checked_in_contract_matches_the_protocol() -> None:
    want = webcontract.render()
    have = webcontract.OUTPUT.read_text() if webcontract.OUTPUT.is_file() else ""
    if have != want:
        diff = difflib.unified_diff(
            have.splitlines(), want.splitlines(), "checked in", "generated", lineterm=""
        )
        pytest.fail(
            f"{webcontract.OUTPUT} is out of date: run `{webcontract.COMMAND}`\n"
            + "\n".join(list(diff)[:60])
        )


def test_a_model_becomes_an_interface() -> None:
    class ExampleEvent(BaseModel):
        """Something happened.

        With a */ in its docs."""

        type: Literal["example"] = "example"
        language: Language
        data: dict[str, Any]
        manifest: dict[str, str]
        names: list[str] = Field(default_factory=list)
        states: list[Literal["a", "b"]] = Field(default_factory=list)
        size: int | None = None

    assert webcontract.interface("ExampleEvent", ExampleEvent.model_json_schema()) == (
        "/**\n"
        " * Something happened.\n"
        " *\n"
        " * With a *\\/ in its docs.\n"
        " */\n"
        "export interface ExampleEvent {\n"
        '  type: "example";\n'
        "  language: Language;\n"
        "  data: Record<string, unknown>;\n"
        "  manifest: Record<string, string>;\n"
        "  names?: string[];\n"
        '  states?: Array<"a" | "b">;\n'
        "  size?: number | null;\n"
        "}\n"
    )


def test_the_web_gets_every_event_and_no_agent_message() -> None:
    text = webcontract.render()
    assert 'type: "file_refused";' in text and "  | FileRefusedEvent" in text
    assert 'type: "hello";' not in text and "FileFromAgent" not in text
    assert '{ extension: ".ipynb", syntax: "json", language: "python", document: true, ' in text
