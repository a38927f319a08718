// The Files pane: the workspace's files as folders, source files apart from the rest;
// open (source → editor, the rest → Viewer), new file, upload (also by drag and drop onto
// the pane or a folder), rename/move, duplicate, delete, download, history. Files written
// by code show up by themselves (files_changed).
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ConfirmDialog, PromptDialog } from "../app/Dialog";
import { VIEWER_WHY } from "../app/model";
import { errorMessage } from "../app/notify";
import type { Api } from "../contract";
import { encodePath } from "../core/api";
import { type Limits, uploadProblem } from "./limits";
import { baseName, buildTree, extension, folderOf, isSource, type FileInfo } from "../core/files";
import { changedFiles } from "../core/messages";
import { load, save } from "../core/storage";
import type { SessionStream } from "../core/stream";
import { rowsOf, Tree, type Row } from "./FileTree";
import { HistoryDialog } from "./HistoryDialog";

interface Props {
  api: Api;
  workspaceId: string;
  stream: SessionStream;
  canWrite: boolean;
  openSource(path: string): void;
  /** Source a file (Ctrl/Cmd+Shift+S on it in the tree) */
  sourceFile(path: string): void;
  openInViewer(path: string): void;
  onRenamed(from: string, to: string): void;
  notify(message: string, kind?: "info" | "error"): void;
}

type Pending =
  | { kind: "new" }
  | { kind: "rename"; path: string }
  | { kind: "duplicate"; path: string }
  | { kind: "delete"; path: string }
  | { kind: "history"; path: string }
  | null;

function copyName(path: string): string {
  const ext = extension(path);
  const stem = ext ? path.slice(0, -ext.length) : path;
  return `${stem}-copy${ext ? path.slice(-ext.length) : ""}`;
}

export function FilesPane(props: Props) {
  const { api, workspaceId, canWrite, notify } = props;
  const base = `/api/workspaces/${workspaceId}`;
  const [files, setFiles] = useState<FileInfo[] | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [closed, setClosed] = useState<Set<string>>(() => new Set(load<string[]>(`closed.${workspaceId}`, [])));
  const [pending, setPending] = useState<Pending>(null);
  const [dropFolder, setDropFolder] = useState<string | null>(null);
  const uploadInput = useRef<HTMLInputElement>(null);
  const body = useRef<HTMLDivElement>(null);

  const reload = async () => {
    try {
      setFiles(await api.get<FileInfo[]>(`${base}/files`));
    } catch (e) {
      notify(`Cannot list the files: ${errorMessage(e)}`, "error");
    }
  };

  useEffect(() => {
    void reload();
    return props.stream.onMessage((msg, newSession) => {
      if (msg.type === "files_changed") {
        setFiles((old) => {
          const byPath = new Map((old ?? []).map((f) => [f.path, f]));
          for (const c of changedFiles(msg)) byPath.set(c.path, { ...byPath.get(c.path), ...c });
          for (const p of msg.deleted ?? []) byPath.delete(p);
          return [...byPath.values()];
        });
      } else if (msg.type === "welcome" && !newSession) {
        void reload(); // back after a disconnection: changes may have been missed
      }
    });
  }, []);

  useEffect(() => save(`closed.${workspaceId}`, [...closed]), [closed]);

  const sections = useMemo(() => {
    const all = files ?? [];
    return {
      source: rowsOf(buildTree(all.filter((f) => isSource(f.path))), closed, "s"),
      other: rowsOf(buildTree(all.filter((f) => !isSource(f.path))), closed, "o"),
    };
  }, [files, closed]);

  const open = (path: string) => (isSource(path) ? props.openSource(path) : props.openInViewer(path));

  const toggle = (folder: string) =>
    setClosed((c) => {
      const n = new Set(c);
      if (n.has(folder)) n.delete(folder);
      else n.add(folder);
      return n;
    });

  const activate = (r: Row) => {
    if (r.kind === "folder") toggle(r.path);
    else {
      setSelected(r.file.path);
      open(r.file.path);
    }
  };

  const focusRow = (key: string) =>
    body.current?.querySelector<HTMLElement>(`[data-key="${CSS.escape(key)}"]`)?.focus();

  const onKey = (e: KeyboardEvent, r: Row, rows: Row[]) => {
    if (r.kind === "file" && (e.ctrlKey || e.metaKey) && e.shiftKey && !e.altKey && e.key.toLowerCase() === "s") {
      e.preventDefault(); // the file the focus is on, not the editor's
      props.sourceFile(r.file.path);
      return;
    }
    const i = rows.indexOf(r);
    const move = (j: number) => {
      const target = rows[Math.max(0, Math.min(rows.length - 1, j))];
      if (target?.kind === "file") setSelected(target.file.path);
      if (target) focusRow(target.key);
    };
    switch (e.key) {
      case "ArrowDown":
        move(i + 1);
        break;
      case "ArrowUp":
        move(i - 1);
        break;
      case "Home":
        move(0);
        break;
      case "End":
        move(rows.length - 1);
        break;
      case "ArrowRight":
        if (r.kind === "folder" && !r.open) toggle(r.path);
        else move(i + 1);
        break;
      case "ArrowLeft":
        if (r.kind === "folder" && r.open) toggle(r.path);
        else {
          const parent = r.kind === "folder" ? folderOf(r.path) : folderOf(r.file.path);
          const p = rows.find((x) => x.kind === "folder" && x.path === parent);
          if (p) focusRow(p.key);
        }
        break;
      case "Enter":
      case " ":
        activate(r);
        break;
      case "F2":
        if (r.kind === "file" && canWrite) setPending({ kind: "rename", path: r.file.path });
        break;
      case "Delete":
        if (r.kind === "file" && canWrite) setPending({ kind: "delete", path: r.file.path });
        break;
      default:
        return;
    }
    e.preventDefault();
  };

  const upload = async (list: FileList | File[], folder: string) => {
    if (!canWrite || !list.length) return;
    const files = Array.from(list);
    try {
      // Checked before anything is sent: a 2 GB drop is refused at once, in MB.
      const problem = uploadProblem(files, await api.get<Limits>(`${base}/limits`));
      if (problem) {
        notify(problem, "error");
        return;
      }
    } catch (e) {
      notify(`Upload failed: ${errorMessage(e)}`, "error");
      return;
    }
    const form = new FormData();
    for (const f of files) form.append("files", f, f.name);
    try {
      const saved = await api.post<FileInfo[]>(`${base}/upload`, form, { folder });
      notify(`Uploaded ${saved.length} file${saved.length === 1 ? "" : "s"}${folder ? ` to ${folder}/` : ""}.`);
      await reload();
    } catch (e) {
      notify(`Upload failed: ${errorMessage(e)}`, "error");
    }
  };

  const act = async (what: () => Promise<unknown>, done?: () => void) => {
    try {
      await what();
      setPending(null);
      done?.();
      await reload();
    } catch (e) {
      notify(errorMessage(e), "error");
    }
  };

  const download = (path: string) => {
    const a = document.createElement("a");
    a.href = api.url(`${base}/files/${encodePath(path)}`, { download: true });
    a.download = baseName(path);
    a.click();
  };

  const hasFiles = (e: DragEvent) => Array.from(e.dataTransfer?.types ?? []).includes("Files");
  const sel = files?.some((f) => f.path === selected) ? selected : null;

  return (
    <div class="pane-body files-pane">
      <div class="pane-toolbar" role="toolbar" aria-label="Files">
        <button type="button" class="icon" disabled={!canWrite} title={canWrite ? "Create a file" : VIEWER_WHY} onClick={() => setPending({ kind: "new" })}>
          + New file
        </button>
        <button type="button" class="icon" disabled={!canWrite} title={canWrite ? "Upload files (or drop them here)" : VIEWER_WHY} onClick={() => uploadInput.current?.click()}>
          ⤒ Upload
        </button>
        <input
          ref={uploadInput}
          type="file"
          multiple
          class="visually-hidden"
          tabIndex={-1}
          aria-hidden="true"
          onChange={(e) => {
            const input = e.currentTarget;
            if (input.files) void upload(Array.from(input.files), sel ? folderOf(sel) : "");
            input.value = "";
          }}
        />
        <span class="toolbar-fill" />
        <button type="button" class="icon" onClick={() => void reload()} title="Refresh the list" aria-label="Refresh the list">
          ↻
        </button>
      </div>
      <div
        ref={body}
        class={dropFolder !== null ? "files-body dragging" : "files-body"}
        onDragOver={(e) => {
          if (!hasFiles(e) || !canWrite) return;
          e.preventDefault();
          if (dropFolder === null) setDropFolder("");
        }}
        onDragLeave={(e) => {
          if (!(e.currentTarget as HTMLElement).contains(e.relatedTarget as Node | null)) setDropFolder(null);
        }}
        onDrop={(e) => {
          if (!hasFiles(e)) return;
          e.preventDefault();
          const folder = dropFolder ?? "";
          setDropFolder(null);
          void upload(Array.from(e.dataTransfer?.files ?? []), folder);
        }}
      >
        {files === null && <p class="muted pad">Loading…</p>}
        {files !== null && files.length === 0 && <p class="muted pad">No files yet. Create one or drop files here.</p>}
        {sections.source.length > 0 && (
          <>
            <h3 class="files-section">Source</h3>
            <Tree label="Source files" rows={sections.source} selected={sel} dropFolder={dropFolder} onActivate={activate} onKey={onKey} onDragFolder={setDropFolder} />
          </>
        )}
        {sections.other.length > 0 && (
          <>
            <h3 class="files-section">Other files</h3>
            <Tree label="Other files" rows={sections.other} selected={sel} dropFolder={dropFolder} onActivate={activate} onKey={onKey} onDragFolder={setDropFolder} />
          </>
        )}
        {dropFolder !== null && <p class="drop-hint">Drop to upload to {dropFolder ? `${dropFolder}/` : "the workspace"}</p>}
      </div>
      {sel && (
        <div class="pane-toolbar file-actions" role="toolbar" aria-label={`Actions for ${sel}`}>
          <span class="file-actions-name" title={sel}>
            {baseName(sel)}
          </span>
          <button type="button" class="icon" disabled={!canWrite} onClick={() => setPending({ kind: "rename", path: sel })} title={canWrite ? "Rename or move (F2)" : VIEWER_WHY}>
            Rename
          </button>
          <button type="button" class="icon" disabled={!canWrite} title={canWrite ? undefined : VIEWER_WHY} onClick={() => setPending({ kind: "duplicate", path: sel })}>
            Duplicate
          </button>
          <button type="button" class="icon" onClick={() => download(sel)}>
            Download
          </button>
          <button type="button" class="icon" onClick={() => setPending({ kind: "history", path: sel })}>
            History
          </button>
          <button type="button" class="icon danger" disabled={!canWrite} onClick={() => setPending({ kind: "delete", path: sel })} title={canWrite ? "Delete (Del)" : VIEWER_WHY}>
            Delete
          </button>
        </div>
      )}

      {pending?.kind === "new" && (
        <PromptDialog
          title="New file"
          label="Path (folders with /)"
          initial={sel && folderOf(sel) ? `${folderOf(sel)}/` : ""}
          submitLabel="Create"
          onClose={() => setPending(null)}
          onSubmit={(path) =>
            act(
              // The path in the body: in a URL, '../x' or 'a//b' would be resolved away.
              () => api.post(`${base}/new`, { path, content: "" }),
              () => {
                setSelected(path);
                open(path);
              },
            )
          }
        />
      )}
      {pending?.kind === "rename" && (
        <PromptDialog
          title="Rename or move"
          label="New path"
          initial={pending.path}
          submitLabel="Rename"
          onClose={() => setPending(null)}
          onSubmit={async (to) => {
            // The editor follows first: the hub announces the move before it answers.
            const from = pending.path;
            props.onRenamed(from, to);
            await act(
              () => api.post(`${base}/move`, { from, to }).catch((e: unknown) => {
                props.onRenamed(to, from);
                throw e;
              }),
              () => setSelected(to),
            );
          }}
        />
      )}
      {pending?.kind === "duplicate" && (
        <PromptDialog
          title="Duplicate"
          label="Path of the copy"
          initial={copyName(pending.path)}
          submitLabel="Duplicate"
          onClose={() => setPending(null)}
          onSubmit={(to) => act(() => api.post(`${base}/move`, { from: pending.path, to, copy: true }), () => setSelected(to))}
        />
      )}
      {pending?.kind === "delete" && (
        <ConfirmDialog
          title="Delete file"
          message={`Delete ${pending.path} and its history? This cannot be undone.`}
          confirmLabel="Delete"
          onClose={() => setPending(null)}
          onConfirm={() => act(() => api.del(`${base}/files/${encodePath(pending.path)}`))}
        />
      )}
      {pending?.kind === "history" && (
        <HistoryDialog
          api={api}
          workspaceId={workspaceId}
          path={pending.path}
          canWrite={canWrite}
          onClose={() => setPending(null)}
          onRestored={(v) => {
            notify(`Restored version ${v} of ${pending.path}.`);
            setPending(null);
            void reload();
          }}
        />
      )}
    </div>
  );
}
