// Requests over the session stream: ids, which requests this page sent, and waiting for
// the reply event (or the protocol_error) that answers one.
import type { AnyEvent } from "../contract";
import type { ClientRequest, RequestBody } from "./messages";
import type { SessionStream } from "./stream";

export interface Reply {
  ok: boolean;
  content: Record<string, unknown>;
  error_code?: string | null;
  message?: string | null;
}

export class RequestError extends Error {
  constructor(
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

interface Waiter {
  resolve(r: Reply): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

const KEEP_IDS = 2000;

export class SessionClient {
  private readonly mine = new Set<string>();
  private readonly waiting = new Map<string, Waiter>();
  private counter = 0;
  private readonly prefix = Math.random().toString(36).slice(2, 8);

  constructor(private readonly stream: SessionStream) {
    stream.subscribe((ev) => this.onEvent(ev));
    stream.onMessage((msg) => {
      if (msg.type === "protocol_error" && msg.request_id) {
        this.settle(msg.request_id, null, new RequestError(msg.code, msg.message));
      }
    });
  }

  /** Send a request; returns its id. Throws the stream's OutboxFullError when it cannot
   * be queued. */
  send(body: RequestBody): string {
    const id = `${body.type.slice(0, 3)}-${this.prefix}-${++this.counter}`;
    this.stream.send({ ...body, id } as ClientRequest);
    this.mine.add(id);
    if (this.mine.size > KEEP_IDS) this.mine.delete(this.mine.values().next().value as string);
    return id;
  }

  /** Whether this page sent the request (other users' requests share the stream). */
  isMine(requestId: unknown): boolean {
    return typeof requestId === "string" && this.mine.has(requestId);
  }

  /** Send a request answered by a reply event; rejects on a protocol_error, a timeout or
   * a full outbox. */
  ask(body: RequestBody, timeoutMs = 10_000): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      const id = this.send(body); // a throw here rejects the promise
      const timer = setTimeout(() => this.settle(id, null, new RequestError("timeout", "No answer in time.")), timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
    });
  }

  private onEvent(ev: AnyEvent): void {
    if (ev.type !== "reply") return;
    this.settle(ev.request_id, {
      ok: ev.ok !== false,
      content: ev.content ?? {},
      error_code: ev.error_code,
      message: ev.message,
    });
  }

  private settle(id: string, reply: Reply | null, error?: Error): void {
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    clearTimeout(w.timer);
    if (reply) w.resolve(reply);
    else w.reject(error ?? new RequestError("failed", "The request failed."));
  }
}
