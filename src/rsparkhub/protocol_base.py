"""The base model of every protocol message (``protocol.py``, ``protocol_events.py``): the
one place for the rule that a message with a field it does not define is refused.

Nothing else lives here: messages are defined in the protocol modules.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)
