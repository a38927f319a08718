// Follow across files: this window tells the hub which file its editor shows (a `focus`
// request, said again after every reconnect), and reads the `presence` messages that name
// each user's file. Following someone opens the file they switch to and scrolls with their
// cursor there (OpenDoc.follow); choosing another file yourself, or their leaving, ends it.
import { useEffect, useRef, useState } from "preact/hooks";
import type { SessionClient } from "../core/session";
import type { SessionStream } from "../core/stream";

export interface Presence {
  users: string[];
  /** user → the file their editor shows */
  files: Record<string, string>;
}

export interface FollowChoice {
  name: string;
  /** the file they show, when the hub knows it */
  path?: string;
}

/** Whom the Follow menu offers: everyone else attached (with their file), and anyone
 * else whose cursor is in this file (``inFile``: from the document's awareness). */
export function followChoices(me: string, presence: Presence, inFile: string[]): FollowChoice[] {
  const names = new Set([...presence.users, ...inFile]);
  names.delete(me);
  return [...names].sort().map((name) => ({ name, path: presence.files[name] }));
}

export type FollowStep = { kind: "stay" } | { kind: "open"; path: string } | { kind: "stop"; why: string };

/** What following ``leader`` asks for now that presence says ``presence``. */
export function followStep(leader: string, presence: Presence, active: string | null): FollowStep {
  if (!presence.users.includes(leader)) return { kind: "stop", why: `${leader} left the workspace: you no longer follow them.` };
  const path = presence.files[leader];
  return path && path !== active ? { kind: "open", path } : { kind: "stay" };
}

/** The workspace's presence, and this window's file told to the hub (``active``). */
export function usePresence(stream: SessionStream, client: SessionClient, active: string | null): Presence {
  const [presence, setPresence] = useState<Presence>({ users: [], files: {} });
  const activeRef = useRef(active);
  activeRef.current = active;
  const tell = () => {
    // only on a live socket: a new socket is told on its welcome, so nothing waits in the outbox
    if (stream.status.state === "open") client.send({ type: "focus", path: activeRef.current });
  };
  useEffect(
    () =>
      stream.onMessage((msg) => {
        if (msg.type === "presence") setPresence({ users: msg.users, files: msg.files ?? {} });
        else if (msg.type === "welcome") tell();
      }),
    [stream],
  );
  useEffect(tell, [active]);
  return presence;
}
