// Admin (#/admin): running sessions (with Stop) and users (AdminUsers).
import { useEffect, useState } from "preact/hooks";
import type { Api } from "../contract";
import { formatSize } from "../core/files";
import { AdminUsers } from "./AdminUsers";
import type { Me, SessionInfo } from "./model";
import { notify, notifyError } from "./notify";
import { hrefFor } from "./route";
import { TopBar } from "./TopBar";

interface Props {
  api: Api;
  me: Me;
  onLogout(): void;
}

const REFRESH_MS = 5000;

export function AdminPage({ api, me, onLogout }: Props) {
  const [users, setUsers] = useState<Me[]>([]);
  const [sessions, setSessions] = useState<SessionInfo[]>([]);

  const reload = async () => {
    try {
      const [u, s] = await Promise.all([api.get<Me[]>("/api/users"), api.get<SessionInfo[]>("/api/sessions")]);
      setUsers(u);
      setSessions(s);
    } catch (e) {
      notifyError(e);
    }
  };

  useEffect(() => {
    void reload();
    const t = setInterval(reload, REFRESH_MS);
    return () => clearInterval(t);
  }, []);

  const stop = async (s: SessionInfo) => {
    try {
      await api.del(`/api/workspaces/${s.workspace_id}/session`);
      notify(`Stopped the session of '${s.workspace}'.`);
      await reload();
    } catch (e) {
      notifyError(e);
    }
  };

  return (
    <>
      <TopBar api={api} me={me} onLogout={onLogout} />
      <main class="admin">
        <h1>Administration</h1>
        <section aria-labelledby="sessions-title">
          <h2 id="sessions-title">Running sessions</h2>
          {sessions.length === 0 ? (
            <p class="muted">No session is running.</p>
          ) : (
            <table class="table">
              <thead>
                <tr>
                  <th scope="col">Owner</th>
                  <th scope="col">Workspace</th>
                  <th scope="col">State</th>
                  <th scope="col">Started</th>
                  <th scope="col">Memory</th>
                  <th scope="col">
                    <span class="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {sessions.map((s) => (
                  <tr key={s.id} data-session={s.id}>
                    <td>{s.owner}</td>
                    <td>
                      <a href={hrefFor({ page: "workspace", id: s.workspace_id })}>{s.workspace}</a>
                    </td>
                    <td>{s.state}</td>
                    <td>{s.started_at ? new Date(s.started_at).toLocaleString() : ""}</td>
                    <td>{typeof s.memory_bytes === "number" ? formatSize(s.memory_bytes) : "—"}</td>
                    <td>
                      <button type="button" class="danger" aria-label={`Stop the session of ${s.workspace}`} onClick={() => stop(s)}>
                        Stop
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
        <AdminUsers api={api} me={me} users={users} reload={reload} />
      </main>
    </>
  );
}
