// "Shared with me" (#/shared): every publication the user can see (GET /api/publications:
// everything of their workspaces and everything published for every user of the hub),
// with its link, audience, when it was rendered and from which file version. On the rows of
// a workspace where the user is an owner or editor: change the audience, a new link,
// republish (same URL, the source's current content), unpublish. The hub enforces who may
// (hub/api/publications.py); the page only leaves out buttons that would be refused.
import { useEffect, useState } from "preact/hooks";
import type { Api } from "../contract";
import { AUDIENCES, canManage, splitUrl, versionLabel, type Audience, type Publication } from "../panes/publish/publications";
import type { Me } from "./model";
import { errorMessage, notify } from "./notify";
import { hrefFor } from "./route";
import { TID } from "./testids";
import { TopBar } from "./TopBar";

interface Props {
  api: Api;
  me: Me;
  onLogout(): void;
}

const when = (iso: string | null): string => (iso ? new Date(iso).toLocaleString() : "—");

export function SharedPage({ api, me, onLogout }: Props) {
  const [list, setList] = useState<Publication[] | null>(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState<string | null>(null);

  const reload = async () => {
    try {
      setList(await api.get<Publication[]>("/api/publications"));
      setError("");
    } catch (e) {
      setError(errorMessage(e));
    }
  };
  useEffect(() => {
    void reload();
  }, []);

  const act = async (p: Publication, what: () => Promise<unknown>, done: string) => {
    setBusy(p.id);
    try {
      await what();
      notify(done);
      await reload();
    } catch (e) {
      notify(`${p.title}: ${errorMessage(e)}`, "error");
    } finally {
      setBusy(null);
    }
  };
  const base = (p: Publication) => `/api/workspaces/${encodeURIComponent(p.workspace_id)}/publications`;
  const one = (p: Publication) => `${base(p)}/${encodeURIComponent(p.id)}`;
  const link = (p: Publication) => {
    const [path, query] = splitUrl(p.url);
    return api.url(path, query);
  };
  const setAudience = (p: Publication, audience: Audience) =>
    act(p, () => api.patch(one(p), { audience }), `${p.title} is now for ${AUDIENCES.find((a) => a.value === audience)?.label.toLowerCase()}; the old link no longer works.`);

  return (
    <>
      <TopBar api={api} me={me} onLogout={onLogout} />
      <main class="admin shared" data-testid={TID.sharedPage}>
        <h1>Shared with me</h1>
        <p class="muted">
          Documents and plots published from your workspaces, and those published for every user of this hub. Each is a snapshot:
          republishing replaces it with the source's current version and keeps its URL.
        </p>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {list === null && !error && <p class="muted">Loading…</p>}
        {list?.length === 0 && <p class="muted">Nothing is published for you yet. Publish a rendered document or a plot from a workspace's Viewer or Plots pane.</p>}
        {list && list.length > 0 && (
          <table class="table">
            <thead>
              <tr>
                <th scope="col">Publication</th>
                <th scope="col">Workspace</th>
                <th scope="col">Who can see it</th>
                <th scope="col">Rendered</th>
                <th scope="col">From</th>
                <th scope="col">Published</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.map((p) => {
                const manage = canManage(p);
                return (
                  <tr key={p.id} data-testid={TID.sharedRow} data-id={p.id} data-kind={p.kind} data-audience={p.audience} data-role={p.role ?? ""}>
                    <td>
                      {p.url ? (
                        <a data-testid={TID.sharedOpen} href={link(p)} target="_blank" rel="noopener noreferrer">
                          {p.title}
                        </a>
                      ) : (
                        p.title
                      )}
                    </td>
                    <td>{p.workspace_name ? <a href={hrefFor({ page: "workspace", id: p.workspace_id })}>{p.workspace_name}</a> : <span class="muted">not yours</span>}</td>
                    <td>
                      {manage ? (
                        <select
                          data-testid={TID.sharedAudience}
                          aria-label={`Who can see ${p.title}`}
                          value={p.audience}
                          disabled={busy === p.id}
                          onChange={(e) => void setAudience(p, e.currentTarget.value as Audience)}
                        >
                          {AUDIENCES.map((a) => (
                            <option key={a.value} value={a.value}>
                              {a.label}
                            </option>
                          ))}
                        </select>
                      ) : (
                        AUDIENCES.find((a) => a.value === p.audience)?.label
                      )}
                    </td>
                    <td>{when(p.rendered_at)}</td>
                    <td>{versionLabel(p)}</td>
                    <td class="muted">
                      {when(p.published_at)} · {p.published_by}
                    </td>
                    <td class="row-actions">
                      {manage && (
                        <>
                          <button
                            type="button"
                            data-testid={TID.sharedRepublish}
                            disabled={busy === p.id}
                            title="Publish the source's current version at the same URL"
                            onClick={() => void act(p, () => api.post(base(p), { kind: p.kind, source: p.source, audience: p.audience }), `Republished ${p.title}: same URL, new content.`)}
                          >
                            Republish
                          </button>
                          {p.audience === "link" && (
                            <button
                              type="button"
                              data-testid={TID.sharedNewLink}
                              disabled={busy === p.id}
                              title="A new secret link; the old one stops working"
                              onClick={() => void act(p, () => api.patch(one(p), { audience: "link", new_link: true }), `New link for ${p.title}; the old one no longer works.`)}
                            >
                              New link
                            </button>
                          )}
                          <button
                            type="button"
                            class="danger"
                            data-testid={TID.sharedUnpublish}
                            disabled={busy === p.id}
                            onClick={() => void act(p, () => api.del(one(p)), `Unpublished ${p.title}; its URL no longer works.`)}
                          >
                            Unpublish
                          </button>
                        </>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </main>
    </>
  );
}
