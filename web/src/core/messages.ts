// The hub → client messages of docs/protocol.md that the shell reads, and the requests it
// sends: the generated wire types (generated/protocol.ts, from protocol.py) plus what only
// this client needs on top of them.
import type { ClientRequest, EventEnvelope, FilesChanged, HubMessage } from "../generated/protocol";

export type {
  ClientRequest,
  EventEnvelope,
  ExecMode,
  FilesChanged,
  PresenceMessage,
  ProtocolError,
  SessionStateMessage,
  WelcomeMessage,
} from "../generated/protocol";

/** One item of ``FilesChanged.changed`` (a plain dict in protocol.py: {path, version, size,
 * sha256}). */
export interface ChangedFile {
  path: string;
  version: number;
  size: number;
  sha256?: string;
}

/** The files a ``files_changed`` message names, typed. */
export function changedFiles(msg: FilesChanged): ChangedFile[] {
  return (msg.changed ?? []) as unknown as ChangedFile[];
}

/** Messages outside the event stream (no seq). */
export type SideMessage = Exclude<HubMessage, EventEnvelope>;

type OmitId<T> = T extends unknown ? Omit<T, "id"> : never;
/** A request without its id (the session client picks one). */
export type RequestBody = OmitId<ClientRequest>;
