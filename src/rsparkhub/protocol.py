"""Every message exchanged between clients, the hub and agents.

This module owns the wire format (JSON text frames over WebSocket) and nothing else:
no I/O, no state. The hub, the agent and the Python client all parse and build messages
with these models, so a message is defined in exactly one place. docs/protocol.md
describes the flows with examples.

Three families:

* ``ClientRequest`` — sent by a client to the hub on ``/api/workspaces/{id}/ws``.
  Every request carries an ``id`` chosen by the client; everything the session produces
  for it names that id as ``request_id``.
* ``Event`` — produced by a session (the agent, or the hub on the session's behalf when the
  agent died). Events are wrapped in an ``EventEnvelope`` carrying the session id and a
  per-session sequence number ``seq`` (1, 2, 3 …). Clients reconnect with ``since=<seq>``.
  They are defined in ``protocol_events.py`` and re-exported here with the rest.
* Agent link messages (``AgentToHub`` / ``HubToAgent``) on ``/agent/ws``.

Every message derives from ``protocol_base.Message`` (unknown fields are refused).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from rsparkhub.filetypes import LANGUAGES, Language, is_document, language_for_path
from rsparkhub.paths import PathError, clean_path
from rsparkhub.protocol_base import Message as _Msg
from rsparkhub.protocol_events import (
    MAX_INPUT_ECHO,
    DocumentEvent,
    DoneEvent,
    EnvEvent,
    ErrorEvent,
    Event,
    EventEnvelope,
    FileRefusedEvent,
    HelpEvent,
    InputEvent,
    PlotEvent,
    ReplyEvent,
    ResultEvent,
    SessionEvent,
    StatusEvent,
    StreamEvent,
    ViewReleasedEvent,
)
from rsparkhub.runs_protocol import EnvironmentEvent

# re-exported: one extension table (filetypes), the session's event stream (protocol_events),
# the run records' event (runs_protocol)
__all__ = [
    "LANGUAGES",
    "MAX_INPUT_ECHO",
    "DocumentEvent",
    "DoneEvent",
    "EnvEvent",
    "EnvironmentEvent",
    "ErrorEvent",
    "Event",
    "EventEnvelope",
    "FileRefusedEvent",
    "HelpEvent",
    "InputEvent",
    "Language",
    "PlotEvent",
    "ReplyEvent",
    "ResultEvent",
    "SessionEvent",
    "StatusEvent",
    "StreamEvent",
    "ViewReleasedEvent",
    "language_for_path",
]

PROTOCOL_VERSION = 1

ExecMode = Literal["console", "run", "source"]
RequestId = Annotated[str, Field(min_length=1, max_length=128)]
# A workspace-relative path, normalised by the one set of path rules (rsparkhub.paths).
RelPath = Annotated[str, AfterValidator(clean_path)]
MAX_CODE_CHARS = 2_000_000


class RuleError(ValueError):
    """A request that breaks one of the protocol's rules (raised inside validators; parsing
    reports it as a ``MessageError`` with this ``code``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- client → hub


class ExecuteRequest(_Msg):
    """Run code: ``console`` runs ``code`` as if typed in a console (``path``, if given,
    names the file it came from); ``run`` and ``source`` run the file at ``path`` at its
    latest saved version (no ``code``; documents are rendered, not run). ``language``
    defaults to the file's (by extension), else R; after validation it is always set.
    """

    type: Literal["execute"] = "execute"
    id: RequestId
    code: str | None = Field(default=None, max_length=MAX_CODE_CHARS)
    path: RelPath | None = None
    language: Language | None = None
    mode: ExecMode = "console"

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if self.mode == "console":
            if self.code is None:
                raise RuleError("invalid_message", "An execute request needs 'code' or 'path'.")
        elif self.path is None:
            raise RuleError("invalid_message", f"Mode '{self.mode}' runs a file: give 'path'.")
        elif self.code is not None:
            raise RuleError(
                "invalid_message", f"Mode '{self.mode}' runs the file at 'path': leave out 'code'."
            )
        elif is_document(self.path):
            raise RuleError(
                "unsupported_file",
                f"'{self.path}' is a document: render it (a 'render' request, or "
                "`rsparkhub render`) instead of running it as a script.",
            )
        if self.language is None and self.path is not None:
            self.language = language_for_path(self.path)
            if self.language is None:
                raise RuleError(
                    "unknown_language",
                    f"Cannot tell the language of '{self.path}'; say language r, python or bash.",
                )
        if self.language is None:
            self.language = "r"
        return self

    @property
    def lang(self) -> Language:
        """The language it runs in (always set once validated)."""
        assert self.language is not None
        return self.language


class InterruptRequest(_Msg):
    type: Literal["interrupt"] = "interrupt"
    id: RequestId
    language: Language | None = None  # None: whatever is running


class RestartRequest(_Msg):
    type: Literal["restart"] = "restart"
    id: RequestId
    language: Language


class CompleteRequest(_Msg):
    type: Literal["complete"] = "complete"
    id: RequestId
    language: Language
    code: str = Field(max_length=100_000)
    cursor_pos: int = Field(ge=0)


class IsCompleteRequest(_Msg):
    type: Literal["is_complete"] = "is_complete"
    id: RequestId
    language: Language
    code: str = Field(max_length=100_000)


class RenderRequest(_Msg):
    """Render a document (R Markdown, Markdown/Quarto with R or Python chunks, a notebook,
    ``.Rnw``) of the workspace to a file next to it (or ``output``). By default in a clean
    separate process, as RStudio's Knit does; ``in_session`` renders R Markdown in the
    session's own R global environment instead."""

    type: Literal["render"] = "render"
    id: RequestId
    path: RelPath
    output: RelPath | None = None
    in_session: bool = False

    @property
    def lang(self) -> Language:
        """The document's default chunk language (what its execution record names)."""
        return language_for_path(self.path) or "r"


class PingRequest(_Msg):
    type: Literal["ping"] = "ping"
    id: RequestId


class FocusRequest(_Msg):
    """The file this client shows in its editor now (``None``: none). Any member may say
    it, viewers too; it is not passed to the session. The hub answers every client of the
    workspace with a ``presence`` message naming each user's file, which is what "Follow"
    across files needs. A reconnected socket says it again (a new socket starts with none)."""

    type: Literal["focus"] = "focus"
    id: RequestId
    path: RelPath | None = None


ClientRequest = Annotated[
    ExecuteRequest
    | InterruptRequest
    | RestartRequest
    | CompleteRequest
    | IsCompleteRequest
    | RenderRequest
    | PingRequest
    | FocusRequest,
    Field(discriminator="type"),
]

# --------------------------------------------------------------------------- hub → client (not in the stream)


class WelcomeMessage(_Msg):
    """First message on a client socket: which session the stream belongs to and where
    replay starts. Events with ``seq <= since`` are not sent again."""

    type: Literal["welcome"] = "welcome"
    protocol: int = PROTOCOL_VERSION
    workspace_id: str
    session_id: str
    state: str
    since: int
    user: str


class ProtocolError(_Msg):
    """A request that could not be accepted (malformed, unknown type, not allowed)."""

    type: Literal["protocol_error"] = "protocol_error"
    request_id: str | None = None
    code: str
    message: str


class ChangedFile(_Msg):
    """One file of a ``files_changed`` message: its new version."""

    path: str
    version: int
    size: int
    sha256: str


class FilesChanged(_Msg):
    """Workspace files changed (saved by a client or written by code)."""

    type: Literal["files_changed"] = "files_changed"
    workspace_id: str
    changed: list[ChangedFile] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)


class SessionStateMessage(_Msg):
    """Not in the stream: the session's state whenever it changes (starting — with a
    progress ``message`` —, running, stopping, stopped, dead). How a session ended is also
    recorded in the stream as a ``SessionEvent``."""

    type: Literal["session_state"] = "session_state"
    session_id: str
    state: str
    message: str | None = None


class PresenceMessage(_Msg):
    """Who is attached to the workspace, and the file each of them shows in the editor
    (``files``: user → path, from their latest ``focus``; users without a file are left
    out). Sent to every client whenever either changes."""

    type: Literal["presence"] = "presence"
    users: list[str]
    files: dict[str, str] = Field(default_factory=dict)


# Everything the hub sends a client on the workspace socket: the event stream's envelopes
# and the messages outside the stream.
HubToClient = Annotated[
    EventEnvelope
    | WelcomeMessage
    | ProtocolError
    | FilesChanged
    | SessionStateMessage
    | PresenceMessage,
    Field(discriminator="type"),
]

# --------------------------------------------------------------------------- agent link


class AgentHello(_Msg):
    """First message of an agent after connecting (also after a re-dial)."""

    type: Literal["hello"] = "hello"
    protocol: int = PROTOCOL_VERSION
    session_id: str
    pid: int | None = None
    languages: list[Language]
    first_unacked_seq: int = Field(ge=1)  # events before this one were acknowledged
    resumed: bool = False  # true when re-dialling after losing the hub


class AgentEvents(_Msg):
    """A batch of session events, in seq order. The hub acknowledges with ``AckMessage``
    once they are durable; the agent resends anything unacknowledged after a re-dial."""

    type: Literal["events"] = "events"
    events: list[EventEnvelope]


class FileFromAgent(_Msg):
    """A file written or changed by code in the session's working directory. ``fseq``
    numbers the agent's file changes (1, 2, 3 … per agent process); the hub answers each
    with a ``FileAck`` once the change is committed or refused. Until then the agent
    keeps it and sends it again after a re-dial."""

    type: Literal["file_changed"] = "file_changed"
    fseq: int = Field(ge=1)
    path: RelPath
    content_b64: str
    sha256: str
    # What the code overwrote: the sha256 of the content the agent last knew on disk for
    # this path (the hub's last put or ack, or its own change still in flight); None for a
    # new file. The hub merges the change into an open shared document against that
    # content, not against whatever version point came in between.
    base_sha256: str | None = None


class FileDeletedByAgent(_Msg):
    """Code deleted a workspace file (acknowledged like ``FileFromAgent``)."""

    type: Literal["file_deleted"] = "file_deleted"
    fseq: int = Field(ge=1)
    path: RelPath


class FileWant(_Msg):
    """After a re-dial: workspace files the hub holds in a newer version than the working
    directory (changed while the link was down). The hub answers with ``FilePut``s."""

    type: Literal["file_want"] = "file_want"
    paths: list[RelPath] = Field(max_length=100_000)


class CallResult(_Msg):
    """The answer to a ``CallMessage``: ``result`` when ok, else ``error_code``/``message``.
    Binary results (a re-rendered plot) travel base64-encoded in ``content_b64``."""

    type: Literal["call_result"] = "call_result"
    call_id: str
    ok: bool
    result: dict[str, Any] = Field(default_factory=dict)
    content_b64: str | None = None
    error_code: str | None = None
    message: str | None = None


AgentToHub = Annotated[
    AgentHello | AgentEvents | FileFromAgent | FileDeletedByAgent | FileWant | CallResult,
    Field(discriminator="type"),
]


class AgentWelcome(_Msg):
    """The hub's answer to ``hello``: the highest seq it has made durable, and the
    workspace files the hub holds (path → sha256). On a fresh start the hub then puts every
    file; on a re-dial the agent compares the manifest with its working directory: what
    code changed since the last ack it sends (again), what the hub changed it asks for
    (``FileWant``), what the hub deleted it deletes."""

    type: Literal["welcome"] = "welcome"
    acked_seq: int = Field(ge=0)
    manifest: dict[str, str]
    settings: dict[str, Any] = Field(default_factory=dict)  # the workspace's settings


class AckMessage(_Msg):
    type: Literal["ack"] = "ack"
    seq: int = Field(ge=0)


class FileAck(_Msg):
    """A file change from the agent (``fseq``) is committed (``ok``) or refused for good
    (``error_code``/``message``: the agent then emits a ``FileRefusedEvent``)."""

    type: Literal["file_ack"] = "file_ack"
    fseq: int = Field(ge=1)
    ok: bool = True
    error_code: str | None = None
    message: str | None = None


class FilePut(_Msg):
    """Write a workspace file into the working directory (before any later request runs)."""

    type: Literal["file_put"] = "file_put"
    path: RelPath
    content_b64: str
    sha256: str


class FileDelete(_Msg):
    type: Literal["file_delete"] = "file_delete"
    path: RelPath


class SettingsMessage(_Msg):
    """The workspace's settings changed (e.g. ``save_r_image``)."""

    type: Literal["settings"] = "settings"
    settings: dict[str, Any]


CallMethod = Literal[
    "env_list",
    "env_children",
    "env_delete",
    "env_clear",
    "view_open",
    "view_rows",
    "view_close",
    "help_html",
    "help_search",
    "plot_render",
    "packages",  # every R and Python package with its source (agent/packages.py)
]


class CallMessage(_Msg):
    """A question about the session's state, answered with ``CallResult`` (not part of the
    event stream: nothing here needs to be durable). Calls run only while the language's
    kernel is not executing code; otherwise the answer is the error ``kernel_busy``."""

    type: Literal["call"] = "call"
    call_id: str = Field(min_length=1, max_length=64)
    language: Language
    method: CallMethod
    params: dict[str, Any] = Field(default_factory=dict)
    # True only when the caller may run code in the session (its owner or an editor). A
    # viewer's call (False) must run nothing on the viewer's behalf: no expression is
    # evaluated, Python help imports nothing, R help evaluates no render-time \Sexpr.
    may_run_code: bool = False


class StopMessage(_Msg):
    """Shut kernels down and exit with code 0."""

    type: Literal["stop"] = "stop"
    reason: str = "requested"


class ForwardedRequest(_Msg):
    """A client request passed on to the agent. For ``execute`` with a ``path`` the hub
    has already sent the file's latest version with ``file_put``."""

    type: Literal["request"] = "request"
    user: str
    request: ClientRequest


HubToAgent = Annotated[
    AgentWelcome
    | AckMessage
    | FileAck
    | FilePut
    | FileDelete
    | StopMessage
    | ForwardedRequest
    | SettingsMessage
    | CallMessage,
    Field(discriminator="type"),
]

_client_request = TypeAdapter(ClientRequest)
_agent_to_hub = TypeAdapter(AgentToHub)
_hub_to_agent = TypeAdapter(HubToAgent)
_event = TypeAdapter(Event)

MAX_FRAME_BYTES = 64 * 1024 * 1024


class MessageError(ValueError):
    """A frame that is not a valid message. ``code`` is machine-readable."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


def _load(raw: str | bytes) -> Any:
    if len(raw) > MAX_FRAME_BYTES:
        raise MessageError("frame_too_large", f"Messages are limited to {MAX_FRAME_BYTES} bytes.")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError("invalid_json", f"The message is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise MessageError("invalid_message", "A message must be a JSON object.")
    return data


def _parse(adapter: TypeAdapter[Any], raw: str | bytes) -> Any:
    if len(raw) > MAX_FRAME_BYTES:
        raise MessageError("frame_too_large", f"Messages are limited to {MAX_FRAME_BYTES} bytes.")
    try:  # one pass over the text (pydantic's own JSON parser); the slow path explains errors
        return adapter.validate_json(raw)
    except ValidationError:
        pass
    data = _load(raw)
    request_id = data.get("id") if isinstance(data.get("id"), str) else None
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        rule = (first.get("ctx") or {}).get("error")
        if first.get("type") == "union_tag_invalid" or (first.get("type") == "union_tag_not_found"):
            code = "unknown_type"
            text = f"Unknown or missing message type {data.get('type')!r}."
        elif isinstance(rule, RuleError | PathError):
            code, text = rule.code, rule.message
        else:
            code = "invalid_message"
            text = f"Invalid message: {where or 'message'}: {first.get('msg')}."
        raise MessageError(code, text, request_id) from None


def parse_client_request(raw: str | bytes) -> ClientRequest:
    return _parse(_client_request, raw)  # type: ignore[no-any-return]


def parse_agent_message(raw: str | bytes) -> AgentToHub:
    return _parse(_agent_to_hub, raw)  # type: ignore[no-any-return]


def parse_hub_to_agent(raw: str | bytes) -> HubToAgent:
    return _parse(_hub_to_agent, raw)  # type: ignore[no-any-return]


def parse_event(data: dict[str, Any]) -> Event:
    return _event.validate_python(data)


def dump(msg: BaseModel) -> str:
    return msg.model_dump_json(exclude_none=False)
