import { describe, expect, it } from "vitest";
import { SessionClient } from "./session";
import { OutboxFullError } from "./stream";
import { fakeStream } from "./testing";

describe("SessionClient", () => {
  it("answers ask with the reply event", async () => {
    const { stream, sockets } = fakeStream();
    const client = new SessionClient(stream);
    stream.start();
    sockets[0].welcome("S1");
    const answer = client.ask({ type: "ping" });
    const id = sockets[0].requests()[0].id;
    expect(client.isMine(id)).toBe(true);
    sockets[0].event("S1", { type: "reply", request_id: id, content: { pong: true } });
    await expect(answer).resolves.toMatchObject({ ok: true, content: { pong: true } });
  });

  it("rejects ask when the request cannot be queued", async () => {
    const { stream } = fakeStream();
    const client = new SessionClient(stream);
    stream.start(); // never welcomed: everything waits in the outbox
    for (let i = 0; i < 200; i++) client.send({ type: "ping" });
    await expect(client.ask({ type: "ping" })).rejects.toBeInstanceOf(OutboxFullError);
  });
});
