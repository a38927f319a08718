// Who has access to a workspace (everyone with access sees it); its owners add a member by
// user name with a role, change a role, or remove a member. The hub enforces the roles:
// viewer (files and output), editor (also run code and save), owner (also share, rename,
// delete the workspace). The project's owner is always owner.
import { useEffect, useState } from "preact/hooks";
import type { Api } from "../contract";
import { Dialog } from "./Dialog";
import type { Member, Role } from "./model";
import { errorMessage, notify } from "./notify";
import { TID } from "./testids";

export const ROLE_HELP: Record<Role, string> = {
  viewer: "sees files and output; cannot run code or save",
  editor: "also runs code and edits files",
  owner: "also shares, renames and deletes the workspace",
};

const ROLES: Role[] = ["viewer", "editor", "owner"];

interface Props {
  api: Api;
  workspaceId: string;
  workspaceName: string;
  canShare: boolean;
  me: string;
  onClose(): void;
  /** the list changed (the page shows the owners in its viewer notice) */
  onChanged?(members: Member[]): void;
}

export function ShareDialog({ api, workspaceId, workspaceName, canShare, me, onClose, onChanged }: Props) {
  const [members, setMembers] = useState<Member[] | null>(null);
  const [error, setError] = useState("");
  const [user, setUser] = useState("");
  const [role, setRole] = useState<Role>("viewer");
  const base = `/api/workspaces/${encodeURIComponent(workspaceId)}/members`;

  const reload = async () => {
    try {
      const m = await api.get<Member[]>(base);
      setMembers(m);
      onChanged?.(m);
    } catch (e) {
      setError(errorMessage(e));
    }
  };
  useEffect(() => {
    void reload();
  }, [workspaceId]);

  const act = async (what: () => Promise<unknown>, done: string) => {
    setError("");
    try {
      await what();
      notify(done);
      await reload();
      return true;
    } catch (e) {
      setError(errorMessage(e));
      return false;
    }
  };

  const add = async (e: Event) => {
    e.preventDefault();
    const name = user.trim();
    if (!name) return;
    if (await act(() => api.put(base, { user: name, role }), `${workspaceName} is shared with ${name} (${role}).`)) setUser("");
  };

  return (
    <Dialog title={`Share ${workspaceName}`} onClose={onClose} testid={TID.shareDialog} wide>
      <h3 class="dialog-subtitle">Who has access</h3>
      {members === null && !error && <p class="muted">Loading…</p>}
      {members && (
        <table class="table">
          <tbody>
            {members.map((m) => (
              <tr key={m.user} data-testid={TID.memberRow} data-user={m.user} data-role={m.role}>
                <td>
                  {m.user}
                  {m.user === me && <span class="muted"> (you)</span>}
                </td>
                <td>
                  {canShare && !m.project_owner ? (
                    <select
                      data-testid={TID.memberRole}
                      aria-label={`Role of ${m.user}`}
                      value={m.role}
                      onChange={(e) => {
                        const r = e.currentTarget.value as Role;
                        void act(() => api.put(base, { user: m.user, role: r }), `${m.user} is now ${r}.`);
                      }}
                    >
                      {ROLES.map((r) => (
                        <option key={r} value={r}>
                          {r}
                        </option>
                      ))}
                    </select>
                  ) : (
                    <span title={ROLE_HELP[m.role]}>{m.role}</span>
                  )}
                  {m.project_owner && <span class="muted small"> · owns the project</span>}
                </td>
                <td class="row-actions">
                  {canShare && !m.project_owner && (
                    <button
                      type="button"
                      class="danger"
                      data-testid={TID.memberRemove}
                      aria-label={`Remove ${m.user}`}
                      onClick={() => void act(() => api.del(`${base}/${encodeURIComponent(m.user)}`), `${m.user} no longer has access.`)}
                    >
                      Remove
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {canShare ? (
        <form class="inline-form" onSubmit={add} aria-label="Add a member">
          <label>
            User name
            <input data-testid={TID.shareUser} value={user} onInput={(e) => setUser(e.currentTarget.value)} required autocomplete="off" autoFocus />
          </label>
          <label>
            Role
            <select data-testid={TID.shareRole} value={role} onChange={(e) => setRole(e.currentTarget.value as Role)}>
              {ROLES.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </label>
          <button type="submit" class="primary" data-testid={TID.shareSubmit}>
            Share
          </button>
        </form>
      ) : (
        <p class="small muted">Only the workspace's owners can change who has access.</p>
      )}
      <ul class="small muted role-help">
        {ROLES.map((r) => (
          <li key={r}>
            <strong>{r}</strong>: {ROLE_HELP[r]}
          </li>
        ))}
      </ul>
      <p class="error-text" role="alert">
        {error}
      </p>
      <div class="dialog-buttons">
        <button type="button" class="primary" onClick={onClose}>
          Done
        </button>
      </div>
    </Dialog>
  );
}
