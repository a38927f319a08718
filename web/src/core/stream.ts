// The workspace's session stream: one WebSocket to /api/workspaces/{id}/ws that delivers
// every event exactly once and in seq order, reconnects by itself (with backoff) after the
// network or the hub drops, and resumes with ?session=<id>&since=<seq> so nothing is missed
// or repeated (docs/protocol.md "Reconnecting").
import type { AnyEvent, EventBus } from "../contract";
import { Emitter } from "./emitter";
import type { ClientRequest, EventEnvelope, SideMessage, WelcomeMessage } from "./messages";

/** The part of the browser WebSocket the stream uses (a fake in tests). */
export interface SocketLike {
  readonly readyState: number;
  onmessage: ((ev: MessageEvent) => void) | null;
  onclose: ((ev: CloseEvent) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type ConnectionStatus =
  | { state: "connecting" } // first attempt
  | { state: "open" } // welcomed: the stream is live
  | { state: "reconnecting"; attempt: number; inMs: number; reason: string }
  | { state: "closed"; code: number; reason: string }; // refused for good (login, access)

export interface StreamOptions {
  /** ws(s)://host/api/workspaces/{id}/ws */
  url: string;
  createSocket?: (url: string) => SocketLike;
  /** first and largest reconnect delay */
  backoffMs?: [number, number];
  /** where "online"/"offline" events come from (window) */
  events?: EventTarget;
}

const OPEN = 1;
const MAX_OUTBOX = 200;

/** A request the stream cannot take: ``MAX_OUTBOX`` requests already wait for the connection
 * to come back. Nothing was sent or queued; the caller tells the user. */
export class OutboxFullError extends Error {
  readonly code = "outbox_full";
  constructor() {
    super(`Not sent: ${MAX_OUTBOX} requests are already waiting for the connection to the hub. Try again once it is back.`);
  }
}

export function workspaceSocketUrl(workspaceId: string, loc: Location = location): string {
  const proto = loc.protocol === "https:" ? "wss" : "ws";
  return `${proto}://${loc.host}/api/workspaces/${encodeURIComponent(workspaceId)}/ws`;
}

export class SessionStream implements EventBus {
  /** the session the stream position belongs to */
  sessionId: string | null = null;
  /** the last seq delivered of that session */
  lastSeq = 0;
  status: ConnectionStatus = { state: "connecting" };

  private readonly events = new Emitter<[AnyEvent, number]>();
  private readonly side = new Emitter<[SideMessage, boolean]>();
  private readonly statusChanged = new Emitter<[ConnectionStatus]>();
  private socket: SocketLike | null = null;
  private welcomed = false;
  private outbox: string[] = [];
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = true;
  private gapRetriedAt = -1;
  private readonly opts: Required<StreamOptions>;

  constructor(opts: StreamOptions) {
    this.opts = {
      createSocket: (url) => new WebSocket(url),
      backoffMs: [300, 5000],
      events: window,
      ...opts,
    };
  }

  /** EventBus: every event, in order, once. */
  subscribe(fn: (ev: AnyEvent, seq: number) => void): () => void {
    return this.events.on(fn);
  }

  /** Messages outside the stream. For a welcome, ``newSession`` says the session changed
   * (the stream position was reset). */
  onMessage(fn: (msg: SideMessage, newSession: boolean) => void): () => void {
    return this.side.on(fn);
  }

  onStatus(fn: (s: ConnectionStatus) => void): () => void {
    return this.statusChanged.on(fn);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.opts.events.addEventListener("offline", this.handleOffline);
    this.opts.events.addEventListener("online", this.handleOnline);
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.opts.events.removeEventListener("offline", this.handleOffline);
    this.opts.events.removeEventListener("online", this.handleOnline);
    this.clearTimer();
    this.drop(1000, "closed");
  }

  /** Send a request; while (re)connecting it waits in an outbox and goes out once the
   * stream is live again. Throws OutboxFullError when the outbox is full. */
  send(req: ClientRequest): void {
    const text = JSON.stringify(req);
    if (this.socket && this.welcomed && this.socket.readyState === OPEN) {
      this.socket.send(text);
    } else if (this.outbox.length < MAX_OUTBOX) {
      this.outbox.push(text);
    } else {
      throw new OutboxFullError();
    }
  }

  /** Drop the connection now and reconnect at once (e.g. after a gap). */
  reconnectNow(reason: string): void {
    if (this.stopped) return;
    this.drop(4000, reason);
    this.clearTimer();
    this.connect();
  }

  private url(): string {
    if (!this.sessionId) return this.opts.url;
    const q = new URLSearchParams({ session: this.sessionId, since: String(this.lastSeq) });
    return `${this.opts.url}?${q}`;
  }

  private connect(): void {
    let sock: SocketLike;
    try {
      sock = this.opts.createSocket(this.url());
    } catch (e) {
      this.scheduleReconnect(e instanceof Error ? e.message : "cannot connect");
      return;
    }
    this.socket = sock;
    this.welcomed = false;
    sock.onmessage = (m) => {
      if (this.socket === sock) this.handleText(String(m.data));
    };
    sock.onclose = (ev) => {
      if (this.socket === sock) this.handleClose(ev.code, ev.reason);
    };
  }

  private handleText(text: string): void {
    let msg: { type?: unknown };
    try {
      msg = JSON.parse(text) as { type?: unknown };
    } catch {
      return;
    }
    if (msg.type === "event") this.handleEnvelope(msg as EventEnvelope);
    else if (msg.type === "welcome") this.handleWelcome(msg as WelcomeMessage);
    else if (typeof msg.type === "string") this.side.emit(msg as SideMessage, false);
  }

  private handleWelcome(w: WelcomeMessage): void {
    const newSession = w.session_id !== this.sessionId;
    if (newSession) {
      this.sessionId = w.session_id;
      this.lastSeq = w.since;
      this.gapRetriedAt = -1;
    }
    this.welcomed = true;
    this.attempt = 0;
    this.setStatus({ state: "open" });
    this.side.emit(w, newSession);
    const queued = this.outbox;
    this.outbox = [];
    for (const text of queued) this.socket?.send(text);
  }

  private handleEnvelope(env: EventEnvelope): void {
    if (env.session_id !== this.sessionId || env.seq <= this.lastSeq) return; // stale or seen
    if (env.seq > this.lastSeq + 1 && this.gapRetriedAt !== this.lastSeq) {
      // Something between was lost on the way: ask again from where we are (once per
      // position, so a stream that really skips numbers cannot loop).
      this.gapRetriedAt = this.lastSeq;
      this.reconnectNow(`gap after seq ${this.lastSeq}`);
      return;
    }
    this.lastSeq = env.seq;
    this.events.emit(env.event, env.seq);
  }

  private handleClose(code: number, reason: string): void {
    this.socket = null;
    this.welcomed = false;
    if (this.stopped) return;
    if (code === 4401 || code === 4403 || code === 4404) {
      this.stopped = true;
      this.setStatus({ state: "closed", code, reason: reason || `refused (${code})` });
      return;
    }
    this.scheduleReconnect(reason || (code === 1006 ? "connection lost" : `closed (${code})`));
  }

  private scheduleReconnect(reason: string): void {
    this.clearTimer();
    const [first, max] = this.opts.backoffMs;
    const inMs = Math.min(max, first * 2 ** this.attempt);
    this.attempt += 1;
    this.setStatus({ state: "reconnecting", attempt: this.attempt, inMs, reason });
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopped) this.connect();
    }, inMs);
  }

  private drop(code: number, reason: string): void {
    const sock = this.socket;
    this.socket = null;
    this.welcomed = false;
    if (!sock) return;
    sock.onmessage = null;
    sock.onclose = null;
    try {
      sock.close(code, reason);
    } catch {
      // already closed
    }
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private setStatus(s: ConnectionStatus): void {
    this.status = s;
    this.statusChanged.emit(s);
  }

  private readonly handleOffline = (): void => {
    // The browser knows the network is gone; the socket may not notice for a long time.
    if (this.socket) {
      this.drop(4000, "offline");
      this.scheduleReconnect("offline");
    }
  };

  private readonly handleOnline = (): void => {
    if (!this.stopped && this.timer !== null) {
      this.clearTimer();
      this.connect();
    }
  };
}
