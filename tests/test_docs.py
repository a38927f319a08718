"""Docs are part of the code: every setting is documented, and the README's commands exist."""

from __future__ import annotations

import os
from pathlib import Path

from rsparkhub.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"`{name}`" in text and f"`RSPARKHUB_{name.upper()}`" in text, name


def test_readme_commands_exist_and_ci_calls_the_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "scripts/setup.sh" in readme and "scripts/test.sh" in readme
    for script in ("scripts/setup.sh", "scripts/test.sh", "scripts/install.sh", ".ci/run"):
        assert os.access(ROOT / script, os.X_OK), script
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_every_protocol_message_is_documented() -> None:
    from typing import get_args

    from rsparkhub import protocol as P

    text = (ROOT / "docs" / "protocol.md").read_text()
    for union in (P.ClientRequest, P.Event, P.AgentToHub, P.HubToAgent):
        for model in get_args(get_args(union)[0]):
            kind = model.model_fields["type"].default
            assert f"`{kind}`" in text, kind


def test_protocol_reexports_every_event_model() -> None:
    """The session events live in protocol_events.py; callers take them from protocol.py."""
    from rsparkhub import protocol as P
    from rsparkhub import protocol_events

    defined = [
        name
        for name, value in vars(protocol_events).items()
        if getattr(value, "__module__", None) == protocol_events.__name__
    ]
    assert "StreamEvent" in defined and "EventEnvelope" in defined
    for name in [*defined, "Event", "MAX_INPUT_ECHO"]:
        assert getattr(P, name) is getattr(protocol_events, name) and name in P.__all__, name
