// The hub → client messages of docs/protocol.md that the shell reads, and the requests it
// sends. Events themselves are contract.ts SessionEvent (a JSON boundary).
import type { Language, SessionEvent } from "../contract";

export interface WelcomeMessage {
  type: "welcome";
  protocol: number;
  workspace_id: string;
  session_id: string;
  state: string;
  since: number;
  user: string;
}

export interface EventEnvelope {
  type: "event";
  session_id: string;
  seq: number;
  event: SessionEvent;
}

export interface SessionStateMessage {
  type: "session_state";
  session_id: string;
  state: string;
  message?: string | null;
}

export interface PresenceMessage {
  type: "presence";
  users: string[];
}

export interface ChangedFile {
  path: string;
  version: number;
  size: number;
  sha256?: string;
}

export interface FilesChangedMessage {
  type: "files_changed";
  workspace_id: string;
  changed: ChangedFile[];
  deleted: string[];
}

export interface ProtocolErrorMessage {
  type: "protocol_error";
  request_id?: string | null;
  code: string;
  message: string;
}

/** Messages outside the event stream (no seq). */
export type SideMessage =
  | WelcomeMessage
  | SessionStateMessage
  | PresenceMessage
  | FilesChangedMessage
  | ProtocolErrorMessage;

export type ExecMode = "console" | "run" | "source";

export type ClientRequest =
  | { type: "execute"; id: string; code?: string; path?: string; language?: Language; mode: ExecMode }
  | { type: "interrupt"; id: string; language?: Language }
  | { type: "restart"; id: string; language: Language }
  | { type: "complete"; id: string; language: Language; code: string; cursor_pos: number }
  | { type: "is_complete"; id: string; language: Language; code: string }
  | { type: "render"; id: string; path: string; output?: string; in_session?: boolean };

type OmitId<T> = T extends unknown ? Omit<T, "id"> : never;
/** A request without its id (the session client picks one). */
export type RequestBody = OmitId<ClientRequest>;
