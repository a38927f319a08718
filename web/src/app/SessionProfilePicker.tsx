// The session's profile in the workspace's top bar: its name, and — when the hub offers
// the caller more than one profile (GET /api/profiles) — a select to start the session
// with another one. Switching while a session may run asks first, then stops it
// (DELETE …/session) and starts it with the chosen profile (POST …/session {profile}).
import { useEffect, useState } from "preact/hooks";
import type { Api, SessionProfile } from "../contract";
import type { SessionView } from "../core/workspace";
import { ConfirmDialog } from "./Dialog";
import { errorMessage } from "./notify";
import { defaultProfile, mayBeRunning, profileLabel, startWithProfile } from "./profiles";
import { TID } from "./testids";

interface Props {
  api: Api;
  workspaceId: string;
  view: Pick<SessionView, "state" | "profile">;
  canWrite: boolean;
  notify(message: string, kind?: "info" | "error"): void;
  /** called once the session runs with the new profile (attach to it) */
  onRestarted(): void;
}

export function SessionProfilePicker({ api, workspaceId, view, canWrite, notify, onRestarted }: Props) {
  const [profiles, setProfiles] = useState<SessionProfile[] | null>(null);
  const [asking, setAsking] = useState<SessionProfile | null>(null);
  const [switching, setSwitching] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    api.get<SessionProfile[]>("/api/profiles").then(
      (list) => live && setProfiles(Array.isArray(list) ? list : []),
      () => live && setProfiles([]), // an older hub, or none offered: show what the session says
    );
    return () => {
      live = false;
    };
  }, [api]);

  const known = (name: string | null) => profiles?.find((p) => p.name === name);
  const labelOf = (name: string) => {
    const p = known(name);
    return p ? profileLabel(p) : name;
  };
  const describe = (name: string) => {
    const p = known(name);
    return p?.description ? `${labelOf(name)} — ${p.description}` : labelOf(name);
  };

  if (!profiles || profiles.length <= 1) {
    if (!view.profile) return null;
    return (
      <span
        class="indicator session-profile"
        data-testid={TID.sessionProfile}
        data-profile={view.profile}
        title={`Session profile: ${describe(view.profile)}`}
      >
        <span class="indicator-text">
          <span aria-hidden="true">Profile: </span>
          <span class="visually-hidden">Session profile: </span>
          {view.profile}
        </span>
      </span>
    );
  }

  const current = view.profile ?? defaultProfile(profiles)?.name ?? "";
  const switchTo = async (p: SessionProfile, stopFirst: boolean) => {
    setSwitching(p.name);
    try {
      await startWithProfile(api, workspaceId, p.name, stopFirst);
      notify(`The session runs with the profile ${p.display_name || p.name}.`);
      onRestarted();
    } catch (e) {
      notify(`Could not start the session with the profile ${p.display_name || p.name}: ${errorMessage(e)}`, "error");
    } finally {
      setSwitching(null);
    }
  };
  const choose = (name: string) => {
    const p = known(name);
    if (!p) return;
    const running = mayBeRunning(view.state);
    if (running && name === view.profile) return;
    if (running) setAsking(p);
    else void switchTo(p, false);
  };

  return (
    <span class="session-profile" data-testid={TID.sessionProfile} data-profile={current}>
      <label class="profile-picker" title={canWrite ? describe(current) : "Only the workspace's owner and editors can restart its session"}>
        <span class="muted">Profile</span>
        <select
          data-testid={TID.profileSelect}
          aria-label="Session profile"
          aria-busy={switching ? "true" : "false"}
          value={switching ?? current}
          disabled={!canWrite || switching !== null}
          onChange={(e) => {
            const name = e.currentTarget.value;
            e.currentTarget.value = current; // shows the running profile until it changes
            choose(name);
          }}
        >
          {!known(current) && current && (
            <option value={current} disabled>
              {current}
            </option>
          )}
          {profiles.map((p) => (
            <option key={p.name} value={p.name} title={p.description || undefined}>
              {profileLabel(p)}
            </option>
          ))}
        </select>
      </label>
      {switching && (
        <span class="muted switching" role="status">
          Switching…
        </span>
      )}
      {asking && (
        <ConfirmDialog
          testid={TID.profileConfirm}
          title="Restart with another profile?"
          message={
            `The session runs with the profile ${labelOf(current)}. To use ${labelOf(asking.name)} it stops ` +
            "— what the R, Python and bash sessions hold in memory is lost for everyone in this workspace; " +
            "files are kept — and starts again."
          }
          confirmLabel="Stop and restart"
          onClose={() => setAsking(null)}
          onConfirm={() => {
            const p = asking;
            setAsking(null);
            void switchTo(p, true);
          }}
        />
      )}
    </span>
  );
}
