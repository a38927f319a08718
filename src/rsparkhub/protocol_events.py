"""The session's event stream: every event a session produces (the agent, or the hub on
the session's behalf when the agent died), the ``Event`` union, and the ``EventEnvelope``
that gives each event its place (``seq``) in the session's stream.

Part of the wire format: ``protocol.py`` re-exports every name here, and callers use them
from there (``from rsparkhub import protocol as P``; ``P.StreamEvent``). No I/O, no state.
``docs/protocol.md`` describes each event.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from rsparkhub.filetypes import Language
from rsparkhub.protocol_base import Message
from rsparkhub.runs_protocol import EnvironmentEvent


class StreamEvent(Message):
    """Text written to stdout or stderr, in the order produced."""

    type: Literal["stream"] = "stream"
    request_id: str | None = None
    name: Literal["stdout", "stderr"]
    text: str


class InputEvent(Message):
    """A request starts running: what was run and by whom, so that every client (also one
    that attaches later) can show the code above its output. ``code`` (console mode) is cut
    at ``MAX_INPUT_ECHO`` characters (``truncated``); ``mode`` is ``render`` for documents."""

    type: Literal["input"] = "input"
    request_id: str
    user: str
    language: Language | None = None
    mode: Literal["console", "run", "source", "render"] = "console"
    code: str | None = None
    path: str | None = None
    truncated: bool = False


MAX_INPUT_ECHO = 100_000


class ResultEvent(Message):
    """A displayed value (rich MIME bundle without images; images become plots)."""

    type: Literal["result"] = "result"
    request_id: str | None = None
    data: dict[str, Any]


class ErrorEvent(Message):
    """An error raised by user code."""

    type: Literal["error"] = "error"
    request_id: str | None = None
    ename: str
    evalue: str
    traceback: list[str] = Field(default_factory=list)


class PlotEvent(Message):
    """A plot was made. The image itself is stored by the hub; fetch it at ``url``."""

    type: Literal["plot"] = "plot"
    request_id: str | None = None
    plot_id: str
    mime: str = "image/png"
    url: str | None = None  # filled in by the hub
    # the session can draw it again at another size / format (POST …/plots/{id}/render)
    renderable: bool = False
    width: int | None = None
    height: int | None = None
    # Set by the agent only: the image bytes (base64). The hub stores them in the plot
    # history, removes this field and fills in ``url`` before anyone else sees the event.
    content_b64: str | None = None


class StatusEvent(Message):
    """The state of one language's kernel (starting, idle, busy, dead)."""

    type: Literal["status"] = "status"
    language: Language
    state: Literal["starting", "idle", "busy", "restarting", "dead"]
    message: str | None = None


class DoneEvent(Message):
    """The end of one request's output. ``status``: ok, error (code failed), aborted
    (interrupted), or failed (the request could not run, e.g. language not installed)."""

    type: Literal["done"] = "done"
    request_id: str
    status: Literal["ok", "error", "aborted", "failed"]
    duration_ms: float = 0.0
    plot_ids: list[str] = Field(default_factory=list)
    error_code: str | None = None
    message: str | None = None


class SessionEvent(Message):
    """The session's life: ready (agent connected), progress (while starting),
    stopped (clean stop), dead (exited unexpectedly; ``exit_code``/``reason``)."""

    type: Literal["session"] = "session"
    state: Literal["starting", "ready", "stopping", "stopped", "dead"]
    message: str | None = None
    exit_code: int | None = None
    languages: list[Language] | None = None


class ReplyEvent(Message):
    """The answer to a request that has a value (complete, is_complete, ping, restart)."""

    type: Literal["reply"] = "reply"
    request_id: str
    ok: bool = True
    content: dict[str, Any] = Field(default_factory=dict)
    error_code: str | None = None
    message: str | None = None


class EnvEvent(Message):
    """The variables of one language's session changed (pushed after each execution that
    changed something, and after deletes). ``assigned`` holds a summary of each new or
    changed variable, ``removed`` the names that are gone. ``reset``: the kernel was
    (re)started — forget everything known about this language's variables first."""

    type: Literal["env"] = "env"
    request_id: str | None = None
    language: Language
    version: int = Field(ge=0)
    assigned: list[dict[str, Any]] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    reset: bool = False


class ViewReleasedEvent(Message):
    """Data-viewer handles released because the variable they show changed or went away
    (or the kernel restarted). Open a new view to see the new value."""

    type: Literal["view_released"] = "view_released"
    language: Language
    view_ids: list[str]
    reason: str


class HelpEvent(Message):
    """Code asked for help (``?topic``, ``help(obj)``, ``??words``). ``kind`` topic: fetch
    ``/api/workspaces/{id}/help?language=…&topic=…&package=…``; kind search: run the help
    search for ``query``."""

    type: Literal["help"] = "help"
    request_id: str | None = None
    language: Language
    kind: Literal["topic", "search"] = "topic"
    topic: str | None = None
    package: str | None = None
    query: str | None = None


class DocumentEvent(Message):
    """A document was rendered: ``output`` is the workspace file holding the result (it is
    also announced with ``files_changed``)."""

    type: Literal["document"] = "document"
    request_id: str
    path: str
    output: str
    format: str
    engine: str
    duration_ms: float = 0.0


class FileRefusedEvent(Message):
    """A file written by code was not saved to the workspace (``error_code``: e.g.
    ``quota_exceeded``, ``invalid_path``, ``file_too_large``); the copy in the session's
    working directory is untouched."""

    type: Literal["file_refused"] = "file_refused"
    request_id: str | None = None
    path: str
    error_code: str
    message: str


Event = Annotated[
    StreamEvent
    | InputEvent
    | ResultEvent
    | ErrorEvent
    | PlotEvent
    | StatusEvent
    | DoneEvent
    | SessionEvent
    | ReplyEvent
    | EnvEvent
    | ViewReleasedEvent
    | HelpEvent
    | DocumentEvent
    | FileRefusedEvent
    | EnvironmentEvent,
    Field(discriminator="type"),
]


class EventEnvelope(Message):
    """A session event with its place in the session's stream."""

    type: Literal["event"] = "event"
    session_id: str
    seq: int = Field(ge=1)
    event: Event
