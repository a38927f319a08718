import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { AnyEvent } from "../contract";
import type { SideMessage } from "./messages";
import { OutboxFullError } from "./stream";
import { fakeStream, type FakeSocket } from "./testing";

/** a stdout line as the event with that seq */
function line(s: FakeSocket, session: string, seq: number, text = `line ${seq}\n`): void {
  s.event(session, { type: "stream", name: "stdout", text }, seq);
}

function setup() {
  const net = new EventTarget();
  const { stream, sockets, last } = fakeStream(net);
  const got: Array<[number, string]> = [];
  stream.subscribe((ev: AnyEvent, seq) => got.push([seq, ev.type === "stream" ? ev.text : ev.type]));
  const side: Array<[SideMessage, boolean]> = [];
  stream.onMessage((m, fresh) => side.push([m, fresh]));
  stream.start();
  return { stream, sockets, got, side, net, last };
}

describe("SessionStream", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("delivers events in order and drops duplicates", () => {
    const { sockets, got } = setup();
    const s = sockets[0];
    expect(s.url).toBe("ws://hub/api/workspaces/w/ws");
    s.welcome("S1");
    line(s, "S1", 1);
    line(s, "S1", 2);
    line(s, "S1", 2);
    line(s, "S1", 1);
    line(s, "S1", 3);
    expect(got.map(([seq]) => seq)).toEqual([1, 2, 3]);
  });

  it("resumes after a drop with session and since, without repeating", () => {
    const { stream, sockets, got, last } = setup();
    sockets[0].welcome("S1");
    for (let i = 1; i <= 5; i++) line(sockets[0], "S1", i);
    sockets[0].drop();
    expect(stream.status).toMatchObject({ state: "reconnecting", attempt: 1, inMs: 100 });
    vi.advanceTimersByTime(100);
    expect(sockets).toHaveLength(2);
    expect(last().url).toBe("ws://hub/api/workspaces/w/ws?session=S1&since=5");
    last().welcome("S1", 5);
    // a hub that replays a little too much: the overlap is dropped
    for (let i = 4; i <= 8; i++) line(last(), "S1", i);
    expect(got.map(([seq]) => seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(stream.status).toEqual({ state: "open" });
  });

  it("backs off while the hub is away and resets after a welcome", () => {
    const { stream, sockets } = setup();
    sockets[0].welcome("S1");
    sockets[0].drop();
    vi.advanceTimersByTime(100);
    sockets[1].drop();
    expect(stream.status).toMatchObject({ attempt: 2, inMs: 200 });
    vi.advanceTimersByTime(200);
    sockets[2].drop();
    vi.advanceTimersByTime(400);
    sockets[3].drop();
    vi.advanceTimersByTime(800);
    sockets[4].drop();
    expect(stream.status).toMatchObject({ attempt: 5, inMs: 1000 });
    vi.advanceTimersByTime(1000);
    sockets[5].welcome("S1");
    sockets[5].drop();
    expect(stream.status).toMatchObject({ attempt: 1, inMs: 100 });
  });

  it("reconnects from the last position when a gap shows up", () => {
    const { sockets, got, last } = setup();
    sockets[0].welcome("S1");
    line(sockets[0], "S1", 1);
    line(sockets[0], "S1", 2);
    line(sockets[0], "S1", 5); // 3 and 4 are missing
    expect(got.map(([seq]) => seq)).toEqual([1, 2]);
    expect(sockets[0].closed).not.toBeNull();
    expect(last().url).toContain("since=2");
    last().welcome("S1", 2);
    for (let i = 3; i <= 6; i++) line(last(), "S1", i);
    expect(got.map(([seq]) => seq)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("accepts a gap that persists after one retry instead of looping", () => {
    const { sockets, got, last } = setup();
    sockets[0].welcome("S1");
    line(sockets[0], "S1", 1);
    line(sockets[0], "S1", 3);
    last().welcome("S1", 1);
    line(last(), "S1", 3);
    expect(got.map(([seq]) => seq)).toEqual([1, 3]);
    expect(sockets).toHaveLength(2);
  });

  it("resets the position when the session changes", () => {
    const { sockets, got, side, last } = setup();
    sockets[0].welcome("S1");
    for (let i = 1; i <= 3; i++) line(sockets[0], "S1", i);
    sockets[0].drop();
    vi.advanceTimersByTime(100);
    // the old session's tail first (how it ended), then the new session from its start
    line(last(), "S1", 4, "old tail\n");
    last().welcome("S2", 0);
    line(last(), "S1", 5, "stale\n");
    line(last(), "S2", 1, "new 1\n");
    line(last(), "S2", 2, "new 2\n");
    expect(got).toEqual([
      [1, "line 1\n"],
      [2, "line 2\n"],
      [3, "line 3\n"],
      [4, "old tail\n"],
      [1, "new 1\n"],
      [2, "new 2\n"],
    ]);
    const welcomes = side.filter(([m]) => m.type === "welcome").map(([, fresh]) => fresh);
    expect(welcomes).toEqual([true, true]);
    last().drop();
    vi.advanceTimersByTime(100);
    expect(last().url).toContain("session=S2&since=2");
  });

  it("a new welcome on the live socket switches sessions too", () => {
    const { sockets, got } = setup();
    sockets[0].welcome("S1");
    line(sockets[0], "S1", 1);
    sockets[0].welcome("S2", 0);
    line(sockets[0], "S2", 1, "again 1\n");
    expect(got.map(([, t]) => t)).toEqual(["line 1\n", "again 1\n"]);
  });

  it("queues requests until the stream is live", () => {
    const { stream, sockets } = setup();
    stream.send({ type: "interrupt", id: "i1" });
    expect(sockets[0].sent).toEqual([]);
    sockets[0].welcome("S1");
    expect(sockets[0].sent).toEqual(['{"type":"interrupt","id":"i1"}']);
    stream.send({ type: "interrupt", id: "i2" });
    expect(sockets[0].sent).toHaveLength(2);
  });

  it("rejects a request it cannot queue instead of dropping it", () => {
    const { stream, sockets } = setup();
    for (let i = 1; i <= 200; i++) stream.send({ type: "ping", id: `p${i}` });
    expect(() => stream.send({ type: "ping", id: "p201" })).toThrow(OutboxFullError);
    expect(() => stream.send({ type: "ping", id: "p201" })).toThrow(/Not sent: 200 requests are already waiting/);
    sockets[0].welcome("S1");
    const ids = sockets[0].requests().map((r) => r.id);
    expect(ids).toHaveLength(200);
    expect(ids[199]).toBe("p200");
    // live again: the queue is empty and requests go out
    stream.send({ type: "ping", id: "p201" });
    expect(sockets[0].requests()[200]).toEqual({ type: "ping", id: "p201" });
  });

  it("passes side messages on and stops for good when refused", () => {
    const { stream, sockets, side } = setup();
    sockets[0].welcome("S1");
    sockets[0].receive({ type: "presence", users: ["alice", "bob"] });
    expect(side[side.length - 1][0]).toEqual({ type: "presence", users: ["alice", "bob"] });
    sockets[0].drop(4401);
    expect(stream.status).toMatchObject({ state: "closed", code: 4401 });
    vi.advanceTimersByTime(10_000);
    expect(sockets).toHaveLength(1);
  });

  it("drops the socket when the browser goes offline and retries when online", () => {
    const { sockets, net, last } = setup();
    sockets[0].welcome("S1");
    line(sockets[0], "S1", 1);
    net.dispatchEvent(new Event("offline"));
    expect(sockets[0].closed).not.toBeNull();
    net.dispatchEvent(new Event("online"));
    expect(sockets).toHaveLength(2);
    expect(last().url).toContain("since=1");
  });

  it("ignores a subscriber that throws", () => {
    const { stream, sockets, got } = setup();
    stream.subscribe(() => {
      throw new Error("boom");
    });
    const err = vi.spyOn(console, "error").mockImplementation(() => undefined);
    sockets[0].welcome("S1");
    line(sockets[0], "S1", 1);
    line(sockets[0], "S1", 2);
    expect(got).toHaveLength(2);
    err.mockRestore();
  });
});
