// One shared document's connection to the hub: a WebSocket to
// /api/workspaces/{id}/doc/{path} speaking y-protocols (sync + awareness, binary frames)
// plus small JSON frames (save requests, version points, errors; docs/protocol.md
// "Document sockets"). Reconnects by itself with backoff; on reconnect the sync exchange
// sends the hub what was typed offline and fetches what was missed, and the CRDT merges
// both. Owns the socket only: the Y.Doc and the Awareness belong to OpenDoc.
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import * as awarenessProtocol from "y-protocols/awareness";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { encodePath } from "../core/api";

const SYNC = 0;
const AWARENESS = 1;
const SAVE_TIMEOUT_MS = 60_000;
const SYNC_WAIT_MS = 10_000;
/** Our own close code: the hub's document is another history than this one (reopen). */
export const RESET = 4409;

export type DocState =
  | { state: "connecting" } // not synced yet
  | { state: "synced" } // live
  | { state: "offline"; reason: string } // reconnecting; edits stay here until then
  | { state: "closed"; code: number; reason: string }; // refused for good (access, deleted)

export interface HubNote {
  type: "version" | "role" | "error" | "saved";
  version?: number;
  state_vector?: string;
  epoch?: string;
  can_write?: boolean;
  code?: string;
  message?: string;
}

export function docSocketUrl(workspaceId: string, path: string, loc: Location = location): string {
  const proto = loc.protocol === "https:" ? "wss" : "ws";
  return `${proto}://${loc.host}/api/workspaces/${encodeURIComponent(workspaceId)}/doc/${encodePath(path)}`;
}

/** Hub close codes after which reconnecting is pointless (4000 + an HTTP status). */
const FINAL = new Set([4400, 4401, 4403, 4404, 4415]);

export class DocSocket {
  status: DocState = { state: "connecting" };
  private ws: WebSocket | null = null;
  private retry = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private destroyed = false;
  private nextId = 1;
  /** the hub document's history this doc belongs to (from the first version note) */
  private epoch: string | null = null;
  private readonly syncWaiters = new Set<(ok: boolean) => void>();
  private readonly pending = new Map<number, { resolve(v: number): void; reject(e: Error): void }>();

  constructor(
    private readonly url: string,
    private readonly doc: Y.Doc,
    readonly awareness: awarenessProtocol.Awareness,
    private readonly onStatus: (s: DocState) => void,
    private readonly onNote: (n: HubNote) => void,
    private readonly backoffMs: [number, number] = [300, 5000],
  ) {
    doc.on("update", this.onDocUpdate);
    awareness.on("update", this.onAwarenessUpdate);
    this.connect();
  }

  /** Ask the hub to make the text a file version now; resolves with the version. Waits
   * (up to SYNC_WAIT_MS) for a socket that is still connecting or syncing. */
  async save(): Promise<number> {
    if (this.status.state !== "synced") await this.synced(SYNC_WAIT_MS);
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      throw new Error("Not connected to the hub: the file is saved once the connection is back.");
    }
    const id = this.nextId++;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error("The hub did not answer the save in time."));
      }, SAVE_TIMEOUT_MS);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      ws.send(JSON.stringify({ type: "save", id }));
    });
  }

  private synced(ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.syncWaiters.delete(done);
        reject(new Error("Not connected to the hub: the file is saved once the connection is back."));
      }, ms);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        if (ok) resolve();
        else reject(new Error("The file was closed."));
      };
      this.syncWaiters.add(done);
    });
  }

  destroy(): void {
    this.destroyed = true;
    clearTimeout(this.timer);
    this.doc.off("update", this.onDocUpdate);
    this.awareness.off("update", this.onAwarenessUpdate);
    awarenessProtocol.removeAwarenessStates(this.awareness, [this.doc.clientID], "local");
    this.ws?.close(1000, "closed");
    this.failPending("The file was closed.");
    for (const w of this.syncWaiters) w(false);
    this.syncWaiters.clear();
  }

  private setStatus(s: DocState): void {
    this.status = s;
    if (s.state === "synced" || s.state === "closed") {
      for (const w of this.syncWaiters) w(s.state === "synced");
      this.syncWaiters.clear();
    }
    this.onStatus(s);
  }

  private connect(): void {
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      const enc = encoding.createEncoder();
      encoding.writeVarUint(enc, SYNC);
      syncProtocol.writeSyncStep1(enc, this.doc);
      ws.send(encoding.toUint8Array(enc));
      if (this.awareness.getLocalState() !== null) this.sendAwareness([this.doc.clientID]);
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (typeof ev.data === "string") this.onText(ev.data);
      else this.onBinary(new Uint8Array(ev.data as ArrayBuffer));
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.failPending("The connection to the hub dropped before the save was confirmed.");
      // the others' cursors are stale until the hub sends them again
      const others = [...this.awareness.getStates().keys()].filter((c) => c !== this.doc.clientID);
      awarenessProtocol.removeAwarenessStates(this.awareness, others, this);
      if (this.destroyed) return;
      if (FINAL.has(ev.code)) {
        this.setStatus({ state: "closed", code: ev.code, reason: ev.reason.replace(/^[a-z_]+: /, "") });
        return;
      }
      const [first, max] = this.backoffMs;
      const wait = Math.min(max, first * 2 ** this.retry++);
      this.setStatus({ state: "offline", reason: ev.reason || "the connection dropped" });
      this.timer = setTimeout(() => this.connect(), wait);
    };
  }

  private onBinary(data: Uint8Array): void {
    const dec = decoding.createDecoder(data);
    const kind = decoding.readVarUint(dec);
    if (kind === SYNC) {
      const enc = encoding.createEncoder();
      encoding.writeVarUint(enc, SYNC);
      const step = syncProtocol.readSyncMessage(dec, enc, this.doc, this);
      if (encoding.length(enc) > 1) this.ws?.send(encoding.toUint8Array(enc));
      if (step === syncProtocol.messageYjsSyncStep2 && this.status.state !== "synced") {
        this.retry = 0;
        this.setStatus({ state: "synced" });
      }
    } else if (kind === AWARENESS) {
      awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(dec), this);
    }
  }

  private onText(text: string): void {
    const msg = JSON.parse(text) as HubNote & { type: string; id?: number };
    if (msg.id !== undefined) {
      const waiting = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.type === "saved" && msg.version !== undefined) waiting?.resolve(msg.version);
      else waiting?.reject(new Error(msg.message ?? "The hub refused the save."));
      return;
    }
    if (msg.type === "version" && msg.epoch) {
      if (this.epoch !== null && msg.epoch !== this.epoch) {
        // The hub's document started anew (its log was lost, or the file was deleted and made
        // again): this doc's history must not be sent to it, or the text would double.
        this.stop(RESET, "reset: the hub's copy of this file started anew; reopening it.");
        return;
      }
      this.epoch = msg.epoch;
    }
    this.onNote(msg);
  }

  private stop(code: number, reason: string): void {
    this.destroyed = true;
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000, "reset");
    this.failPending(reason);
    this.setStatus({ state: "closed", code, reason: reason.replace(/^[a-z_]+: /, "") });
  }

  private failPending(why: string): void {
    for (const p of this.pending.values()) p.reject(new Error(why));
    this.pending.clear();
  }

  private readonly onDocUpdate = (update: Uint8Array, origin: unknown) => {
    // until synced (also after a reconnect), the sync exchange carries what was typed
    if (origin === this || this.status.state !== "synced" || this.ws?.readyState !== WebSocket.OPEN) return;
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, SYNC);
    syncProtocol.writeUpdate(enc, update);
    this.ws.send(encoding.toUint8Array(enc));
  };

  private readonly onAwarenessUpdate = (
    change: { added: number[]; updated: number[]; removed: number[] },
    origin: unknown,
  ) => {
    if (origin !== "local") return;
    this.sendAwareness([...change.added, ...change.updated, ...change.removed]);
  };

  private sendAwareness(clients: number[]): void {
    if (this.ws?.readyState !== WebSocket.OPEN) return;
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, AWARENESS);
    encoding.writeVarUint8Array(enc, awarenessProtocol.encodeAwarenessUpdate(this.awareness, clients));
    this.ws.send(encoding.toUint8Array(enc));
  }
}

/** A state vector the hub sent (base64) as a map client → clock. */
export function decodeVector(b64: string): Map<number, number> {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return Y.decodeStateVector(bytes);
}

/** Whether ``doc`` holds anything beyond ``vector`` (edits not in that version). */
export function aheadOf(doc: Y.Doc, vector: Map<number, number>): boolean {
  for (const [client, clock] of Y.decodeStateVector(Y.encodeStateVector(doc))) {
    if (clock > (vector.get(client) ?? 0)) return true;
  }
  return false;
}
