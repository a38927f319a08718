// The hub → client messages of docs/protocol.md that the shell reads, and the requests it
// sends: the generated wire types (generated/protocol.ts, from protocol.py) plus what only
// this client needs on top of them.
import type { ChangedFile, ClientRequest, EventEnvelope, FilesChanged, HubMessage } from "../generated/protocol";

export type {
  ChangedFile,
  ClientRequest,
  EventEnvelope,
  ExecMode,
  FilesChanged,
  PresenceMessage,
  ProtocolError,
  SessionStateMessage,
  WelcomeMessage,
} from "../generated/protocol";

/** The files a ``files_changed`` message names. */
export function changedFiles(msg: FilesChanged): ChangedFile[] {
  return msg.changed ?? [];
}

/** Messages outside the event stream (no seq). */
export type SideMessage = Exclude<HubMessage, EventEnvelope>;

type OmitId<T> = T extends unknown ? Omit<T, "id"> : never;
/** A request without its id (the session client picks one). */
export type RequestBody = OmitId<ClientRequest>;
