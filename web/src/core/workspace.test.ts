import { describe, expect, it, vi } from "vitest";
import type { Api } from "../contract";
import { FakeSocket } from "./testing";
import { WorkspaceSession } from "./workspace";

function setup(languages: string[] = ["r", "python"], profile: string | null = "local") {
  const sockets: FakeSocket[] = [];
  const get = vi.fn(async () => ({ languages, profile }));
  const api = { get } as unknown as Api;
  const ws = new WorkspaceSession("w", api, {
    createSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    events: new EventTarget(),
  });
  ws.start();
  return { ws, sock: sockets[0], get };
}

describe("WorkspaceSession", () => {
  it("follows connection, session state, kernels and presence", async () => {
    const { ws, sock, get } = setup();
    expect(ws.view.connection.state).toBe("connecting");
    sock.receive({ type: "welcome", protocol: 1, workspace_id: "w", session_id: "S1", state: "starting", since: 0, user: "u" });
    expect(ws.view).toMatchObject({ connection: { state: "open" }, state: "starting" });
    sock.receive({ type: "session_state", session_id: "S1", state: "starting", message: "installing packages" });
    expect(ws.view.message).toBe("installing packages");
    sock.receive({ type: "session_state", session_id: "S1", state: "running" });
    await vi.waitFor(() => expect(ws.view.languages).toEqual(["r", "python"]));
    expect(get).toHaveBeenCalledWith("/api/workspaces/w/session");
    sock.event("S1", { type: "status", language: "r", state: "busy" });
    expect(ws.view.kernels).toEqual({ r: "busy" });
    sock.receive({ type: "presence", users: ["alice", "bob"] });
    expect(ws.view.users).toEqual(["alice", "bob"]);
    sock.event("S1", { type: "session", state: "dead", message: "out of memory" });
    expect(ws.view).toMatchObject({ state: "dead", message: "out of memory", kernels: {} });
    ws.stop();
  });

  it("keeps the session's profile from the session info, and reattaches on demand", async () => {
    const { ws, sock, get } = setup(["r"], null);
    sock.welcome("S1");
    await vi.waitFor(() => expect(get).toHaveBeenCalledTimes(1));
    expect(ws.view.profile).toBeNull(); // still starting: nothing known yet
    get.mockResolvedValue({ languages: ["r"], profile: "big" });
    sock.receive({ type: "session_state", session_id: "S1", state: "running" });
    await vi.waitFor(() => expect(ws.view.profile).toBe("big"));
    ws.reattach();
    expect(sock.closed).not.toBeNull();
    ws.stop();
  });
});
