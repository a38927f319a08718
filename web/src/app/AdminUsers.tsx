// Admin → Users: add a user (the answer is a one-time login link to hand over), disable or
// enable, make or unmake admin, reset a password (a new link), and a user's sessions.
import { useEffect, useState } from "preact/hooks";
import type { Api } from "../contract";
import { formatSize } from "../core/files";
import { ConfirmDialog, Dialog } from "./Dialog";
import type { Me, SessionInfo, UserWithLink } from "./model";
import { errorMessage, notify, notifyError } from "./notify";
import { hrefFor } from "./route";
import { TID } from "./testids";

interface Props {
  api: Api;
  me: Me;
  users: Me[];
  reload(): Promise<void>;
}

type Pending =
  | { kind: "link"; user: string; link: string; fresh: boolean }
  | { kind: "reset"; user: Me }
  | { kind: "sessions"; user: Me }
  | null;

const when = (iso: string | null | undefined) => (iso ? new Date(iso).toLocaleString() : "");

export function AdminUsers({ api, me, users, reload }: Props) {
  const [pending, setPending] = useState<Pending>(null);
  const [name, setName] = useState("");
  const [admin, setAdmin] = useState(false);

  const add = async (e: Event) => {
    e.preventDefault();
    try {
      const u = await api.post<UserWithLink>("/api/users", { name: name.trim(), is_admin: admin });
      setName("");
      setAdmin(false);
      if (u.warning) notify(u.warning, "error");
      if (u.login_link) setPending({ kind: "link", user: u.name, link: u.login_link, fresh: true });
      await reload();
    } catch (err) {
      notifyError(err);
    }
  };

  const patch = async (u: Me, body: { disabled?: boolean; is_admin?: boolean }, done: string) => {
    try {
      await api.patch(`/api/users/${encodeURIComponent(u.name)}`, body);
      notify(done);
    } catch (err) {
      notifyError(err);
    }
    await reload();
  };

  const reset = async (u: Me) => {
    try {
      const r = await api.post<UserWithLink>(`/api/users/${encodeURIComponent(u.name)}/login-link`);
      setPending(r.login_link ? { kind: "link", user: u.name, link: r.login_link, fresh: false } : null);
      await reload();
    } catch (err) {
      setPending(null);
      notifyError(err);
    }
  };

  return (
    <section aria-labelledby="users-title">
      <h2 id="users-title">Users</h2>
      <form class="inline-form" onSubmit={add} aria-label="Add a user">
        <label>
          New user name
          <input
            data-testid={TID.newUserName}
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
            required
            maxLength={64}
            pattern="[a-z_][a-z0-9_.\-]{0,63}"
            title="Lower-case letters, digits, '_', '.', '-', starting with a letter or '_'"
            autocomplete="off"
          />
        </label>
        <label class="check">
          <input type="checkbox" data-testid={TID.newUserAdmin} checked={admin} onChange={(e) => setAdmin(e.currentTarget.checked)} />
          administrator
        </label>
        <button type="submit" class="primary" data-testid={TID.newUserSubmit}>
          Add user
        </button>
        <span class="small muted">They get a one-time login link and choose their own password.</span>
      </form>
      <table class="table">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Admin</th>
            <th scope="col">Password</th>
            <th scope="col">Status</th>
            <th scope="col">
              <span class="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {users.map((u) => {
            const self = u.id === me.id;
            return (
              <tr key={u.id} data-testid={TID.userRow} data-user={u.name} data-disabled={String(!!u.disabled)} data-admin={String(u.is_admin)}>
                <td>{u.name}</td>
                <td>{u.is_admin ? "yes" : ""}</td>
                <td>{u.has_password ? "set" : "not chosen yet"}</td>
                <td>{u.disabled ? "disabled" : "active"}</td>
                <td class="row-actions">
                  <button type="button" data-testid={TID.userSessions} onClick={() => setPending({ kind: "sessions", user: u })}>
                    Sessions
                  </button>
                  <button
                    type="button"
                    data-testid={TID.userAdmin}
                    disabled={self}
                    title={self ? "You cannot remove your own admin role" : undefined}
                    onClick={() => patch(u, { is_admin: !u.is_admin }, u.is_admin ? `${u.name} is no longer an administrator.` : `${u.name} is now an administrator.`)}
                  >
                    {u.is_admin ? "Remove admin" : "Make admin"}
                  </button>
                  <button
                    type="button"
                    data-testid={TID.userReset}
                    disabled={self}
                    title={self ? "Change your own password under Account" : "Forget the password and make a new one-time login link"}
                    onClick={() => setPending({ kind: "reset", user: u })}
                  >
                    New login link
                  </button>
                  <button
                    type="button"
                    class={u.disabled ? undefined : "danger"}
                    data-testid={TID.userDisable}
                    disabled={self}
                    title={self ? "You cannot disable yourself" : undefined}
                    onClick={() => patch(u, { disabled: !u.disabled }, u.disabled ? `${u.name} is enabled.` : `${u.name} is disabled.`)}
                  >
                    {u.disabled ? "Enable" : "Disable"}
                  </button>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {pending?.kind === "link" && <LinkDialog user={pending.user} link={pending.link} fresh={pending.fresh} onClose={() => setPending(null)} />}
      {pending?.kind === "reset" && (
        <ConfirmDialog
          title={`New login link for ${pending.user.name}`}
          message={`${pending.user.name}'s password stops working, their browsers are logged out and earlier links end. Whoever opens the new link chooses a new password.`}
          confirmLabel="Reset the password"
          onClose={() => setPending(null)}
          onConfirm={() => reset(pending.user)}
        />
      )}
      {pending?.kind === "sessions" && <UserSessionsDialog api={api} user={pending.user} onClose={() => setPending(null)} />}
    </section>
  );
}

function LinkDialog({ user, link, fresh, onClose }: { user: string; link: string; fresh: boolean; onClose(): void }) {
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(link);
      notify("The link is copied.");
    } catch {
      notify("Select the link and copy it (the browser refused the clipboard).", "error");
    }
  };
  return (
    <Dialog title={fresh ? `${user} is added` : `New login link for ${user}`} onClose={onClose} testid={TID.loginLinkDialog} wide>
      <p>
        Give this link to <strong>{user}</strong> (it is shown only now). It logs them in once, within a day, and asks them to
        choose a password.
      </p>
      <input class="link-field" readOnly value={link} data-testid={TID.loginLink} onFocus={(e) => e.currentTarget.select()} aria-label="One-time login link" />
      <div class="dialog-buttons">
        <button type="button" onClick={copy}>
          Copy
        </button>
        <button type="button" class="primary" onClick={onClose} autoFocus>
          Done
        </button>
      </div>
    </Dialog>
  );
}

function UserSessionsDialog({ api, user, onClose }: { api: Api; user: Me; onClose(): void }) {
  const [rows, setRows] = useState<SessionInfo[] | null>(null);
  const [error, setError] = useState("");
  useEffect(() => {
    api.get<SessionInfo[]>(`/api/users/${encodeURIComponent(user.name)}/sessions`).then(setRows, (e) => setError(errorMessage(e)));
  }, [user.name]);
  return (
    <Dialog title={`Sessions of ${user.name}`} onClose={onClose} testid={TID.userSessionsDialog} wide>
      {error && <p class="error-text">{error}</p>}
      {rows === null && !error && <p class="muted">Loading…</p>}
      {rows?.length === 0 && <p class="muted">{user.name} has not run a session yet.</p>}
      {rows && rows.length > 0 && (
        <table class="table">
          <thead>
            <tr>
              <th scope="col">Workspace</th>
              <th scope="col">State</th>
              <th scope="col">Started</th>
              <th scope="col">Ended</th>
              <th scope="col">Memory</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((s) => (
              <tr key={s.id} data-testid={TID.userSessionRow} data-state={s.state}>
                <td>
                  <a href={hrefFor({ page: "workspace", id: s.workspace_id })}>
                    {s.project ? `${s.project} / ` : ""}
                    {s.workspace}
                  </a>
                </td>
                <td>{s.state}</td>
                <td>{when(s.started_at)}</td>
                <td>{when(s.ended_at)}</td>
                <td>{typeof s.memory_bytes === "number" ? formatSize(s.memory_bytes) : "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div class="dialog-buttons">
        <button type="button" class="primary" onClick={onClose} autoFocus>
          Close
        </button>
      </div>
    </Dialog>
  );
}
