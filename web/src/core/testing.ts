// Test helpers: a fake WebSocket for SessionStream, driven by the test.
import type { SocketLike } from "./stream";
import { SessionStream } from "./stream";

export class FakeSocket implements SocketLike {
  readyState = 1;
  sent: string[] = [];
  closed: number | null = null;
  onmessage: ((ev: MessageEvent) => void) | null = null;
  onclose: ((ev: CloseEvent) => void) | null = null;
  constructor(public url: string) {}
  send(data: string): void {
    this.sent.push(data);
  }
  close(code = 1000): void {
    this.closed = code;
    this.readyState = 3;
  }
  receive(msg: object): void {
    this.onmessage?.({ data: JSON.stringify(msg) } as MessageEvent);
  }
  welcome(session: string, since = 0): void {
    this.receive({ type: "welcome", protocol: 1, workspace_id: "w", session_id: session, state: "running", since, user: "u" });
  }
  private seq = 0;
  /** an event envelope (seq counts up from the last one given) */
  event(session: string, event: object, seq = this.seq + 1): void {
    this.seq = seq;
    this.receive({ type: "event", session_id: session, seq, event });
  }
  drop(code = 1006): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" } as CloseEvent);
  }
  /** the requests sent, decoded */
  requests(): Array<Record<string, unknown>> {
    return this.sent.map((s) => JSON.parse(s) as Record<string, unknown>);
  }
}

export function fakeStream(net: EventTarget = new EventTarget()) {
  const sockets: FakeSocket[] = [];
  const stream = new SessionStream({
    url: "ws://hub/api/workspaces/w/ws",
    createSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    backoffMs: [100, 1000],
    events: net,
  });
  return { stream, sockets, last: () => sockets[sockets.length - 1] };
}
