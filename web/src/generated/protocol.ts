// Generated from src/rsparkhub/protocol.py and src/rsparkhub/filetypes.py by
// src/rsparkhub/webcontract.py — do not edit; run `.venv/bin/python -m rsparkhub.webcontract`.
// Fields with a default may be missing (optional); dict[str, Any] is Record<string, unknown>.

export type Language = "r" | "python" | "bash";

export type Syntax = "r" | "python" | "bash" | "markdown" | "sql" | "latex" | "json" | "text";

export type ExecMode = "console" | "run" | "source";

/**
 * Run code: ``console`` runs ``code`` as if typed in a console (``path``, if given,
 * names the file it came from); ``run`` and ``source`` run the file at ``path`` at its
 * latest saved version (no ``code``; documents are rendered, not run). ``language``
 * defaults to the file's (by extension), else R; after validation it is always set.
 */
export interface ExecuteRequest {
  type: "execute";
  id: string;
  code?: string | null;
  path?: string | null;
  language?: Language | null;
  mode?: ExecMode;
}

export interface InterruptRequest {
  type: "interrupt";
  id: string;
  language?: Language | null;
}

export interface RestartRequest {
  type: "restart";
  id: string;
  language: Language;
}

export interface CompleteRequest {
  type: "complete";
  id: string;
  language: Language;
  code: string;
  cursor_pos: number;
}

export interface IsCompleteRequest {
  type: "is_complete";
  id: string;
  language: Language;
  code: string;
}

/**
 * Render a document (R Markdown, Markdown/Quarto with R or Python chunks, a notebook,
 * ``.Rnw``) of the workspace to a file next to it (or ``output``). By default in a clean
 * separate process, as RStudio's Knit does; ``in_session`` renders R Markdown in the
 * session's own R global environment instead.
 */
export interface RenderRequest {
  type: "render";
  id: string;
  path: string;
  output?: string | null;
  in_session?: boolean;
}

export interface PingRequest {
  type: "ping";
  id: string;
}

/**
 * The file this client shows in its editor now (``None``: none). Any member may say
 * it, viewers too; it is not passed to the session. The hub answers every client of the
 * workspace with a ``presence`` message naming each user's file, which is what "Follow"
 * across files needs. A reconnected socket says it again (a new socket starts with none).
 */
export interface FocusRequest {
  type: "focus";
  id: string;
  path?: string | null;
}

/**
 * Text written to stdout or stderr, in the order produced.
 */
export interface StreamEvent {
  type: "stream";
  request_id?: string | null;
  name: "stdout" | "stderr";
  text: string;
}

/**
 * A request starts running: what was run and by whom, so that every client (also one
 * that attaches later) can show the code above its output. ``code`` (console mode) is cut
 * at ``MAX_INPUT_ECHO`` characters (``truncated``); ``mode`` is ``render`` for documents.
 */
export interface InputEvent {
  type: "input";
  request_id: string;
  user: string;
  language?: Language | null;
  mode?: "console" | "run" | "source" | "render";
  code?: string | null;
  path?: string | null;
  truncated?: boolean;
}

/**
 * A displayed value (rich MIME bundle without images; images become plots).
 */
export interface ResultEvent {
  type: "result";
  request_id?: string | null;
  data: Record<string, unknown>;
}

/**
 * An error raised by user code.
 */
export interface ErrorEvent {
  type: "error";
  request_id?: string | null;
  ename: string;
  evalue: string;
  traceback?: string[];
}

/**
 * A plot was made. The image itself is stored by the hub; fetch it at ``url``.
 */
export interface PlotEvent {
  type: "plot";
  request_id?: string | null;
  plot_id: string;
  mime?: string;
  url?: string | null;
  renderable?: boolean;
  width?: number | null;
  height?: number | null;
  content_b64?: string | null;
}

/**
 * The state of one language's kernel (starting, idle, busy, dead).
 */
export interface StatusEvent {
  type: "status";
  language: Language;
  state: "starting" | "idle" | "busy" | "restarting" | "dead";
  message?: string | null;
}

/**
 * The end of one request's output. ``status``: ok, error (code failed), aborted
 * (interrupted), or failed (the request could not run, e.g. language not installed).
 */
export interface DoneEvent {
  type: "done";
  request_id: string;
  status: "ok" | "error" | "aborted" | "failed";
  duration_ms?: number;
  plot_ids?: string[];
  error_code?: string | null;
  message?: string | null;
}

/**
 * The session's life: ready (agent connected), progress (while starting),
 * stopped (clean stop), dead (exited unexpectedly; ``exit_code``/``reason``).
 */
export interface SessionEvent {
  type: "session";
  state: "starting" | "ready" | "stopping" | "stopped" | "dead";
  message?: string | null;
  exit_code?: number | null;
  languages?: Language[] | null;
}

/**
 * The answer to a request that has a value (complete, is_complete, ping, restart).
 */
export interface ReplyEvent {
  type: "reply";
  request_id: string;
  ok?: boolean;
  content?: Record<string, unknown>;
  error_code?: string | null;
  message?: string | null;
}

/**
 * The variables of one language's session changed (pushed after each execution that
 * changed something, and after deletes). ``assigned`` holds a summary of each new or
 * changed variable, ``removed`` the names that are gone. ``reset``: the kernel was
 * (re)started — forget everything known about this language's variables first.
 */
export interface EnvEvent {
  type: "env";
  request_id?: string | null;
  language: Language;
  version: number;
  assigned?: Record<string, unknown>[];
  removed?: string[];
  reset?: boolean;
}

/**
 * Data-viewer handles released because the variable they show changed or went away
 * (or the kernel restarted). Open a new view to see the new value.
 */
export interface ViewReleasedEvent {
  type: "view_released";
  language: Language;
  view_ids: string[];
  reason: string;
}

/**
 * Code asked for help (``?topic``, ``help(obj)``, ``??words``). ``kind`` topic: fetch
 * ``/api/workspaces/{id}/help?language=…&topic=…&package=…``; kind search: run the help
 * search for ``query``.
 */
export interface HelpEvent {
  type: "help";
  request_id?: string | null;
  language: Language;
  kind?: "topic" | "search";
  topic?: string | null;
  package?: string | null;
  query?: string | null;
}

/**
 * A document was rendered: ``output`` is the workspace file holding the result (it is
 * also announced with ``files_changed``).
 */
export interface DocumentEvent {
  type: "document";
  request_id: string;
  path: string;
  output: string;
  format: string;
  engine: string;
  duration_ms?: number;
}

/**
 * A file written by code was not saved to the workspace (``error_code``: e.g.
 * ``quota_exceeded``, ``invalid_path``, ``file_too_large``); the copy in the session's
 * working directory is untouched.
 */
export interface FileRefusedEvent {
  type: "file_refused";
  request_id?: string | null;
  path: string;
  error_code: string;
  message: string;
}

/**
 * What a ``run``/``source``/``render`` request runs with: ``environment_id`` names the
 * session's environment snapshot. The agent sends ``content`` (the snapshot) the first time
 * an id occurs in its stream; the hub stores it, takes it out and keeps only the id, like a
 * plot's image — clients never see ``content``.
 */
export interface EnvironmentEvent {
  type: "environment";
  request_id: string;
  environment_id: string;
  content?: Record<string, unknown> | null;
}

/**
 * A session event with its place in the session's stream.
 */
export interface EventEnvelope {
  type: "event";
  session_id: string;
  seq: number;
  event: Event;
}

/**
 * First message on a client socket: which session the stream belongs to and where
 * replay starts. Events with ``seq <= since`` are not sent again.
 */
export interface WelcomeMessage {
  type: "welcome";
  protocol?: number;
  workspace_id: string;
  session_id: string;
  state: string;
  since: number;
  user: string;
}

/**
 * A request that could not be accepted (malformed, unknown type, not allowed).
 */
export interface ProtocolError {
  type: "protocol_error";
  request_id?: string | null;
  code: string;
  message: string;
}

/**
 * Workspace files changed (saved by a client or written by code).
 */
export interface FilesChanged {
  type: "files_changed";
  workspace_id: string;
  changed?: ChangedFile[];
  deleted?: string[];
}

/**
 * Not in the stream: the session's state whenever it changes (starting — with a
 * progress ``message`` —, running, stopping, stopped, dead). How a session ended is also
 * recorded in the stream as a ``SessionEvent``.
 */
export interface SessionStateMessage {
  type: "session_state";
  session_id: string;
  state: string;
  message?: string | null;
}

/**
 * Who is attached to the workspace, and the file each of them shows in the editor
 * (``files``: user → path, from their latest ``focus``; users without a file are left
 * out). Sent to every client whenever either changes.
 */
export interface PresenceMessage {
  type: "presence";
  users: string[];
  files?: Record<string, string>;
}

/**
 * One file of a ``files_changed`` message: its new version.
 */
export interface ChangedFile {
  path: string;
  version: number;
  size: number;
  sha256: string;
}

export type ClientRequest =
  | ExecuteRequest
  | InterruptRequest
  | RestartRequest
  | CompleteRequest
  | IsCompleteRequest
  | RenderRequest
  | PingRequest
  | FocusRequest;

export type Event =
  | StreamEvent
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
  | EnvironmentEvent;

export type HubMessage =
  | EventEnvelope
  | WelcomeMessage
  | ProtocolError
  | FilesChanged
  | SessionStateMessage
  | PresenceMessage;

/**
 * What a workspace file is, by its extension: the one table the hub, the agent, the Python
 * client and the web client (``web/src/generated/protocol.ts``, generated from it) share.
 *
 * * ``language`` — the kernel a script runs in, or a document's default chunk language;
 * * ``document`` — rendered (knit) rather than run or sourced;
 * * ``source`` — text the IDE opens in its editor (everything else goes to the Viewer);
 * * ``syntax`` — the editor's highlighting.
 */
export interface FileType {
  extension: string;
  syntax: Syntax;
  language: Language | null;
  document: boolean;
  source: boolean;
}

export const FILE_TYPES: readonly FileType[] = [
  { extension: ".r", syntax: "r", language: "r", document: false, source: true },
  { extension: ".py", syntax: "python", language: "python", document: false, source: true },
  { extension: ".sh", syntax: "bash", language: "bash", document: false, source: true },
  { extension: ".bash", syntax: "bash", language: "bash", document: false, source: true },
  { extension: ".rmd", syntax: "markdown", language: "r", document: true, source: true },
  { extension: ".qmd", syntax: "markdown", language: "r", document: true, source: true },
  { extension: ".rnw", syntax: "latex", language: "r", document: true, source: true },
  { extension: ".md", syntax: "markdown", language: null, document: true, source: true },
  { extension: ".ipynb", syntax: "json", language: "python", document: true, source: false },
  { extension: ".sql", syntax: "sql", language: null, document: false, source: true },
  { extension: ".txt", syntax: "text", language: null, document: false, source: true },
];
