// Small status displays of the workspace view: connection, session state, presence.
import type { Language } from "../contract";
import type { ConnectionStatus } from "../core/stream";
import { LANGUAGE_LABEL, type SessionView } from "../core/workspace";
import { TID } from "./testids";

function connectionText(c: ConnectionStatus): string {
  switch (c.state) {
    case "connecting":
      return "Connecting…";
    case "open":
      return "Connected";
    case "reconnecting":
      return `Reconnecting${c.inMs >= 1000 ? ` in ${Math.round(c.inMs / 1000)} s` : "…"}`;
    case "closed":
      return `Disconnected: ${c.reason}`;
  }
}

export function ConnectionIndicator({ status }: { status: ConnectionStatus }) {
  const text = connectionText(status);
  return (
    <span
      class={`indicator conn-${status.state}`}
      data-testid={TID.connectionStatus}
      data-state={status.state}
      role="status"
      title={status.state === "reconnecting" ? `${text} (${status.reason})` : text}
    >
      <span class="dot" aria-hidden="true" />
      <span class="indicator-text">{text}</span>
    </span>
  );
}

export function sessionText(view: SessionView): string {
  switch (view.state) {
    case "starting":
      return `Starting${view.message ? `: ${view.message}` : "…"}`;
    case "running": {
      const busy = Object.entries(view.kernels)
        .filter(([, s]) => s && s !== "idle")
        .map(([l, s]) => `${LANGUAGE_LABEL[l as Language]} ${s}`);
      return busy.length ? `Running · ${busy.join(" · ")}` : "Ready";
    }
    case "stopping":
      return "Stopping…";
    case "stopped":
      return "Stopped: runs again on the next request";
    case "dead":
      return `Session died${view.message ? `: ${view.message}` : ""}`;
    default:
      return "Waiting for the session…";
  }
}

export function SessionIndicator({ view }: { view: SessionView }) {
  const busy = Object.values(view.kernels).some((s) => s === "busy");
  const cls = view.state === "running" ? (busy ? "busy" : "ok") : view.state === "dead" ? "bad" : "wait";
  const text = sessionText(view);
  return (
    <span
      class={`indicator session-${cls}`}
      data-testid={TID.sessionStatus}
      data-state={view.state}
      data-busy={busy ? "true" : "false"}
      role="status"
      title={text}
    >
      <span class="dot" aria-hidden="true" />
      <span class="indicator-text">{text}</span>
    </span>
  );
}

function hue(name: string): number {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return h;
}

/** Who else is attached (a restart of a kernel loses their variables too). */
export function othersAttached(users: string[], me: string): string[] {
  return users.filter((u) => u !== me);
}

export function Presence({ users, me }: { users: string[]; me: string }) {
  const label = users.length ? `Here now: ${users.join(", ")}` : "Nobody attached";
  return (
    <ul class="presence" data-testid={TID.presence} aria-label={label} title={label}>
      {users.map((u) => (
        <li
          key={u}
          class={u === me ? "avatar me" : "avatar"}
          data-user={u}
          style={{ background: `hsl(${hue(u)} 55% 45%)` }}
          aria-label={u === me ? `${u} (you)` : u}
        >
          {u.slice(0, 2).toUpperCase()}
        </li>
      ))}
    </ul>
  );
}
