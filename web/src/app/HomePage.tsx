// Home (#/): the caller's projects and workspaces; create (empty, from an example, from a
// zip), rename and delete workspaces; create projects.
import { useEffect, useRef, useState } from "preact/hooks";
import type { Api } from "../contract";
import { ConfirmDialog, PromptDialog } from "./Dialog";
import type { Example, Me, Project, Workspace } from "./model";
import { notify, notifyError } from "./notify";
import { hrefFor } from "./route";
import { TID } from "./testids";
import { TopBar } from "./TopBar";

interface Props {
  api: Api;
  me: Me;
  onLogout(): void;
}

type Pending = { kind: "rename"; ws: Workspace } | { kind: "delete"; ws: Workspace } | null;

export function HomePage({ api, me, onLogout }: Props) {
  const [projects, setProjects] = useState<Project[]>([]);
  const [workspaces, setWorkspaces] = useState<Workspace[] | null>(null);
  const [examples, setExamples] = useState<Example[]>([]);
  const [projectId, setProjectId] = useState("");
  const [name, setName] = useState("");
  const [example, setExample] = useState("");
  const [pending, setPending] = useState<Pending>(null);
  const zipInput = useRef<HTMLInputElement>(null);

  const reload = async () => {
    try {
      const [p, w] = await Promise.all([api.get<Project[]>("/api/projects"), api.get<Workspace[]>("/api/workspaces")]);
      setProjects(p);
      setWorkspaces(w);
    } catch (e) {
      notifyError(e);
    }
  };

  useEffect(() => {
    void reload();
    api.get<Example[]>("/api/examples").then(
      (ex) => {
        setExamples(ex);
        if (ex.length) setExample(ex[0].name);
      },
      () => setExamples([]),
    );
  }, []);

  /** The chosen project, or the first one, or a new "default" project. */
  const targetProject = async (): Promise<string> => {
    if (projectId && projects.some((p) => p.id === projectId)) return projectId;
    if (projects.length) return projects[0].id;
    const p = await api.post<Project>("/api/projects", { name: "default" });
    setProjects([p]);
    return p.id;
  };

  const create = async (body: { name: string; example?: string }) => {
    try {
      const pid = await targetProject();
      const w = await api.post<Workspace>(`/api/projects/${pid}/workspaces`, body);
      notify(`Created workspace '${w.name}'.`);
      setName("");
      await reload();
    } catch (e) {
      notifyError(e);
    }
  };

  const importZip = async (file: File) => {
    try {
      const pid = await targetProject();
      const form = new FormData();
      form.append("file", file);
      const wsName = name.trim() || file.name.replace(/\.zip$/i, "");
      const w = await api.post<Workspace & { files: number }>(`/api/projects/${pid}/import`, form, { name: wsName });
      notify(`Imported '${w.name}' (${w.files} files).`);
      setName("");
      await reload();
    } catch (e) {
      notifyError(e);
    }
  };

  const newProject = async (projectName: string) => {
    try {
      const p = await api.post<Project>("/api/projects", { name: projectName });
      setProjectId(p.id);
      await reload();
    } catch (e) {
      notifyError(e);
    }
  };

  const owned = (pid: string) => (workspaces ?? []).filter((w) => w.project_id === pid && w.role === "owner");
  const shared = (workspaces ?? []).filter((w) => w.role !== "owner");
  const chosenExample = examples.find((e) => e.name === example);

  const row = (w: Workspace) => (
    <li key={w.id} class="ws-row">
      <a href={hrefFor({ page: "workspace", id: w.id })} data-testid={TID.workspaceLink} data-name={w.name}>
        {w.name}
      </a>
      {w.role !== "owner" && (
        <span class="badge">
          {w.project} · {w.role}
        </span>
      )}
      {w.role === "owner" && (
        <span class="ws-row-actions">
          <button type="button" class="icon" aria-label={`Rename ${w.name}`} onClick={() => setPending({ kind: "rename", ws: w })}>
            Rename
          </button>
          <button type="button" class="icon danger" aria-label={`Delete ${w.name}`} onClick={() => setPending({ kind: "delete", ws: w })}>
            Delete
          </button>
        </span>
      )}
    </li>
  );

  return (
    <>
      <TopBar api={api} me={me} onLogout={onLogout} />
      <main class="home" data-testid={TID.home}>
        <section class="home-list" aria-labelledby="home-title">
          <h1 id="home-title">Workspaces</h1>
          {workspaces === null && <p class="muted">Loading…</p>}
          {workspaces !== null && workspaces.length === 0 && <p class="muted">No workspaces yet: create one.</p>}
          {projects.map((p) => (
            <section key={p.id} class="project" aria-label={`Project ${p.name}`}>
              <h2>{p.name}</h2>
              {owned(p.id).length ? <ul class="ws-list">{owned(p.id).map(row)}</ul> : <p class="muted">No workspaces.</p>}
            </section>
          ))}
          {shared.length > 0 && (
            <section class="project" aria-label="Shared with you">
              <h2>Shared with you</h2>
              <ul class="ws-list">{shared.map(row)}</ul>
            </section>
          )}
        </section>

        <aside class="home-actions" aria-label="Create">
          <form
            class="card"
            onSubmit={(e) => {
              e.preventDefault();
              if (name.trim()) void create({ name: name.trim() });
            }}
          >
            <h2>New workspace</h2>
            {projects.length > 1 && (
              <label>
                Project
                <select value={projectId || projects[0].id} onChange={(e) => setProjectId(e.currentTarget.value)}>
                  {projects.map((p) => (
                    <option key={p.id} value={p.id}>
                      {p.name}
                    </option>
                  ))}
                </select>
              </label>
            )}
            <label>
              Name
              <input
                data-testid={TID.newWorkspaceName}
                value={name}
                onInput={(e) => setName(e.currentTarget.value)}
                placeholder="analysis"
                autocomplete="off"
              />
            </label>
            <button type="submit" class="primary" data-testid={TID.newWorkspaceSubmit} disabled={!name.trim()}>
              Create
            </button>
          </form>

          {examples.length > 0 && (
            <div class="card">
              <h2>From an example</h2>
              <label>
                Example
                <select data-testid={TID.exampleSelect} value={example} onChange={(e) => setExample(e.currentTarget.value)}>
                  {examples.map((ex) => (
                    <option key={ex.name} value={ex.name}>
                      {ex.title || ex.name}
                    </option>
                  ))}
                </select>
              </label>
              {chosenExample && <p class="muted small">{chosenExample.description}</p>}
              <button
                type="button"
                data-testid={TID.createFromExample}
                disabled={!chosenExample}
                onClick={() => chosenExample && void create({ name: name.trim() || chosenExample.name, example: chosenExample.name })}
              >
                Create from example
              </button>
              <p class="muted small">Named after the example unless a name is given above.</p>
            </div>
          )}

          <div class="card">
            <h2>Import a zip</h2>
            <input
              ref={zipInput}
              type="file"
              accept=".zip,application/zip"
              class="visually-hidden"
              aria-label="Zip file to import"
              onChange={(e) => {
                const f = e.currentTarget.files?.[0];
                if (f) void importZip(f);
                e.currentTarget.value = "";
              }}
            />
            <button type="button" onClick={() => zipInput.current?.click()}>
              Choose a zip…
            </button>
            <p class="muted small">Becomes a new workspace, named like the file unless a name is given above.</p>
          </div>

          <NewProject onCreate={newProject} />
        </aside>
      </main>

      {pending?.kind === "rename" && (
        <PromptDialog
          title="Rename workspace"
          label="New name"
          initial={pending.ws.name}
          submitLabel="Rename"
          onClose={() => setPending(null)}
          onSubmit={async (v) => {
            try {
              await api.patch(`/api/workspaces/${pending.ws.id}`, { name: v });
              setPending(null);
              await reload();
            } catch (e) {
              notifyError(e);
            }
          }}
        />
      )}
      {pending?.kind === "delete" && (
        <ConfirmDialog
          title="Delete workspace"
          message={`Delete '${pending.ws.name}' with all its files and its session? This cannot be undone.`}
          confirmLabel="Delete"
          onClose={() => setPending(null)}
          onConfirm={async () => {
            try {
              await api.del(`/api/workspaces/${pending.ws.id}`);
              setPending(null);
              await reload();
            } catch (e) {
              notifyError(e);
            }
          }}
        />
      )}
    </>
  );
}

function NewProject({ onCreate }: { onCreate(name: string): Promise<void> }) {
  const [value, setValue] = useState("");
  return (
    <form
      class="card"
      onSubmit={async (e) => {
        e.preventDefault();
        if (!value.trim()) return;
        await onCreate(value.trim());
        setValue("");
      }}
    >
      <h2>New project</h2>
      <label>
        Name
        <input value={value} onInput={(e) => setValue(e.currentTarget.value)} autocomplete="off" />
      </label>
      <button type="submit" disabled={!value.trim()}>
        Create project
      </button>
    </form>
  );
}
