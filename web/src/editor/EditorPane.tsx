// The Editor pane: open files in tabs (each a shared document, OpenDoc), save (a version
// point on the hub), run the line/selection in the console, source/run scripts, render
// documents. Changes made elsewhere arrive through the document itself, never as a conflict.
// Follow (follow.ts): scroll with a collaborator's cursor, and open the file they switch to.
import { openSearchPanel } from "@codemirror/search";
import { useEffect, useRef, useState } from "preact/hooks";
import { ConfirmDialog } from "../app/Dialog";
import { VIEWER_WHY } from "../app/model";
import { errorMessage } from "../app/notify";
import { TID } from "../app/testids";
import type { Api, Language } from "../contract";
import type { Emitter } from "../core/emitter";
import { baseName, extension, isDocument, scriptLanguage } from "../core/files";
import type { SessionClient } from "../core/session";
import { load, save } from "../core/storage";
import type { SessionStream } from "../core/stream";
import type { ConsoleController } from "../console/controller";
import { chunkLanguage } from "./chunks";
import { kernelCompletion } from "./completion";
import { docSocketUrl } from "./docSocket";
import { EditorTabs, tabId } from "./EditorTabs";
import { followChoices, followStep, usePresence } from "./follow";
import { OpenDoc } from "./OpenDoc";
import { runTarget } from "./runLine";

/** How long a followed collaborator may be gone (reconnecting) before following ends. */
const FOLLOW_GRACE_MS = 8000;

/** What the active file's keys do, also from the command palette. */
export type EditorAction = "save" | "runLine" | "runFile" | "source" | "find";

export type EditorCommand =
  | { type: "open"; path: string }
  | { type: "renamed"; from: string; to: string }
  /** on the active file */
  | { type: "action"; action: EditorAction }
  /** Source a file (from the Files pane: saved first when it is open with edits) */
  | { type: "source"; path: string };

interface Props {
  api: Api;
  workspaceId: string;
  client: SessionClient;
  stream: SessionStream;
  controller: ConsoleController;
  consoleLanguage: Language;
  canWrite: boolean;
  /** this window's user (named at their cursor in the others' editors) */
  user: string;
  commands: Emitter<[EditorCommand]>;
  notify(message: string, kind?: "info" | "error"): void;
}

export function EditorPane(props: Props) {
  const { workspaceId, canWrite, notify } = props;
  const docs = useRef<OpenDoc[]>([]);
  const [active, setActive] = useState<string | null>(null);
  const [, setTick] = useState(0);
  const [closing, setClosing] = useState<OpenDoc | null>(null);
  /** whom this window follows (their cursor, and the file they show) */
  const [following, setFollowing] = useState<string | null>(null);
  const latest = useRef(props);
  latest.current = props;
  const activeRef = useRef(active);
  activeRef.current = active;
  const refresh = () => setTick((t) => t + 1);
  const find = (path: string) => docs.current.find((d) => d.path === path);
  const presence = usePresence(props.stream, props.client, active);
  const presenceRef = useRef(presence);
  presenceRef.current = presence;
  const followingRef = useRef(following);
  followingRef.current = following;

  /** This user chose a file themselves: following someone to another file ends. */
  const choose = (path: string) => {
    const leader = followingRef.current;
    if (leader && presenceRef.current.files[leader] !== path) setFollowing(null);
    setActive(path);
  };

  /** The language a line of ``doc`` runs in (null: not runnable). */
  const languageAt = (doc: OpenDoc, pos: number): Language | null => {
    const script = scriptLanguage(doc.path);
    if (script) return script;
    const ext = extension(doc.path);
    if (isDocument(doc.path)) return chunkLanguage(doc.view.state.doc, doc.view.state.doc.lineAt(pos).number, ext === ".rnw");
    return ext === ".txt" || ext === "" ? latest.current.consoleLanguage : null;
  };

  /** A version point on the hub (nothing new if the text is already the file's). */
  const saveDoc = async (doc: OpenDoc): Promise<boolean> => {
    if (!latest.current.canWrite) return false;
    try {
      await doc.save();
      return true;
    } catch (e) {
      notify(`Saving ${doc.path} failed: ${errorMessage(e)}`, "error");
      return false;
    }
  };

  const runLine = (doc: OpenDoc) => {
    if (!latest.current.canWrite) return;
    const v = doc.view;
    const sel = v.state.selection.main;
    const language = languageAt(doc, sel.head);
    if (!language) {
      notify(isDocument(doc.path) ? "Put the cursor in a code chunk to run it." : `${baseName(doc.path)} cannot run in the console.`);
      return;
    }
    const target = runTarget(v.state.doc, sel.from, sel.to, language);
    if (!target) return;
    latest.current.controller.execute(target.code, language);
    if (target.next !== null) v.dispatch({ selection: { anchor: target.next }, scrollIntoView: true });
  };

  const runFile = async (doc: OpenDoc, mode: "source" | "run") => {
    if (!scriptLanguage(doc.path)) {
      notify(`Only R, Python and shell scripts can be ${mode === "source" ? "sourced" : "run"}.`);
      return;
    }
    if (await saveDoc(doc)) latest.current.controller.runFile(doc.path, mode);
  };

  const render = async (doc: OpenDoc) => {
    if (await saveDoc(doc)) latest.current.controller.render(doc.path);
  };

  const act = (action: EditorAction) => {
    const doc = activeRef.current ? find(activeRef.current) : undefined;
    if (!doc) {
      notify("Open a file first.");
      return;
    }
    if (action === "save") void saveDoc(doc);
    else if (action === "runLine") runLine(doc);
    else if (action === "source") void runFile(doc, "source");
    else if (action === "runFile") void (isDocument(doc.path) ? render(doc) : runFile(doc, "run"));
    else {
      doc.view.focus();
      openSearchPanel(doc.view);
    }
  };

  const sourcePath = (path: string) => {
    if (!latest.current.canWrite) return;
    const doc = find(path);
    if (doc) void runFile(doc, "source");
    else if (scriptLanguage(path)) latest.current.controller.runFile(path, "source");
    else notify(`Only R, Python and shell scripts can be sourced.`);
  };

  const openDoc = (path: string, activate = true): void => {
    const known = find(path);
    if (known) {
      if (activate) setActive(path);
      return;
    }
    const doc: OpenDoc = new OpenDoc(path, {
      canWrite: latest.current.canWrite,
      user: latest.current.user,
      url: docSocketUrl(workspaceId, path),
      onChange: refresh,
      onClosed: (d, reason) => {
        if (!d.deleted) notify(`${d.path} closed: ${reason}`, "error");
        close(d);
      },
      onReset: (d) => {
        const wasActive = activeRef.current === d.path;
        const unsentEdits = unsent(d);
        close(d);
        openDoc(d.path, wasActive);
        notify(`${d.path} was reopened: the hub's copy of it started anew${unsentEdits ? " (edits made here while disconnected are not in it)" : ""}.`, "error");
      },
      onError: (message) => notify(message, "error"),
      actions: {
        save: () => void saveDoc(doc),
        runLine: () => runLine(doc),
        source: () => void runFile(doc, "source"),
        runFile: () => void (isDocument(doc.path) ? render(doc) : runFile(doc, "run")),
      },
      complete: kernelCompletion(latest.current.client, (ctx) => {
        const line = ctx.state.doc.lineAt(ctx.pos);
        const language = languageAt(doc, ctx.pos);
        return language ? { language, code: line.text, offset: line.from } : null;
      }),
    });
    docs.current = [...docs.current, doc];
    if (activate || !activeRef.current) setActive(doc.path);
    refresh();
  };

  const close = (doc: OpenDoc) => {
    const i = docs.current.indexOf(doc);
    docs.current = docs.current.filter((d) => d !== doc);
    doc.destroy();
    if (activeRef.current === doc.path) setActive(docs.current[Math.min(i, docs.current.length - 1)]?.path ?? null);
    refresh();
  };

  // open files of the last visit; commands from the Files pane; files changed on the hub
  useEffect(() => {
    const saved = load<{ paths: string[]; active: string | null }>(`tabs.${workspaceId}`, { paths: [], active: null });
    for (const p of saved.paths) openDoc(p, false);
    if (saved.active && find(saved.active)) setActive(saved.active);
    const offCommands = props.commands.on((cmd) => {
      if (cmd.type === "open") {
        openDoc(cmd.path, false);
        choose(cmd.path);
      } else if (cmd.type === "action") act(cmd.action);
      else if (cmd.type === "source") sourcePath(cmd.path);
      else {
        // a renamed file is another document on the hub: open that one
        const doc = find(cmd.from);
        if (!doc) return;
        const wasActive = activeRef.current === cmd.from;
        close(doc);
        openDoc(cmd.to, wasActive);
      }
    });
    // a file deleted on the hub: its document socket closes too (4404), this is quicker
    const offFiles = props.stream.onMessage((msg) => {
      if (msg.type !== "files_changed") return;
      for (const p of msg.deleted ?? []) {
        const doc = find(p);
        if (doc) close(doc);
      }
    });
    return () => {
      offCommands();
      offFiles();
      for (const d of docs.current) d.destroy();
      docs.current = [];
    };
  }, []);

  useEffect(() => {
    for (const d of docs.current) d.setEditable(canWrite);
  }, [canWrite]);

  const paths = docs.current.map((d) => d.path).join("\n");
  useEffect(() => {
    save(`tabs.${workspaceId}`, { paths: docs.current.map((d) => d.path), active });
  }, [paths, active]);

  // warn before leaving with edits the hub has not received (offline); Ctrl/Cmd+S (save) and Ctrl/Cmd+Shift+S
  // (source) outside the editor act on the active file too (the Files pane sources the
  // file its focus is on itself)
  useEffect(() => {
    const onUnload = (e: BeforeUnloadEvent) => {
      if (docs.current.some(unsent)) e.preventDefault();
    };
    const onKey = (e: KeyboardEvent) => {
      if (e.defaultPrevented || !(e.ctrlKey || e.metaKey) || e.altKey || e.key.toLowerCase() !== "s") return;
      e.preventDefault();
      const doc = activeRef.current ? find(activeRef.current) : undefined;
      if (doc && e.shiftKey) void runFile(doc, "source");
      else if (doc) void saveDoc(doc);
    };
    window.addEventListener("beforeunload", onUnload);
    window.addEventListener("keydown", onKey);
    return () => {
      window.removeEventListener("beforeunload", onUnload);
      window.removeEventListener("keydown", onKey);
    };
  }, []);

  // Following: go where the leader goes; their cursor scrolls the file they show.
  useEffect(() => {
    if (!following) {
      for (const d of docs.current) d.follow(null);
      return;
    }
    const step = followStep(following, presence, activeRef.current);
    if (step.kind === "stop") {
      // a dropped socket (a hub restart too) is back within seconds: give up only after
      const t = setTimeout(() => {
        setFollowing(null);
        notify(step.why);
      }, FOLLOW_GRACE_MS);
      return () => clearTimeout(t);
    }
    if (step.kind === "open") openDoc(step.path);
    const shown = step.kind === "open" ? step.path : activeRef.current;
    for (const d of docs.current) d.follow(d.path === shown ? following : null);
  }, [following, presence]);

  const current = active ? find(active) : undefined;
  useEffect(() => {
    current?.view.requestMeasure();
    current?.scrollToFollowed();
  }, [current]);

  const requestClose = (doc: OpenDoc) => (unsent(doc) ? setClosing(doc) : close(doc));
  const script = current ? scriptLanguage(current.path) : null;
  const choices = current ? followChoices(latest.current.user, presence, following ? [...current.others, following] : current.others) : [];

  return (
    <div class="pane-body editor-pane">
      <EditorTabs docs={docs.current} active={active} onSelect={choose} onClose={requestClose} />
      {current && (
        <div class="pane-toolbar" role="toolbar" aria-label="Editor">
          <button type="button" class="icon" data-testid={TID.saveButton} disabled={!canWrite} onClick={() => void saveDoc(current)} title={canWrite ? "Save (Ctrl+S)" : VIEWER_WHY}>
            Save
          </button>
          <button type="button" class="icon" onClick={() => openSearchPanel(current.view)} title="Find and replace (Ctrl+F)">
            Find
          </button>
          {choices.length > 0 && (
            <select
              class="follow"
              data-testid={TID.followSelect}
              data-following={following ?? ""}
              aria-label="Follow a collaborator"
              title="Scroll with a collaborator's cursor and open the files they switch to"
              value={following ?? ""}
              onChange={(e) => setFollowing((e.target as HTMLSelectElement).value || null)}
            >
              <option value="">Follow…</option>
              {choices.map((c) => (
                <option key={c.name} value={c.name}>
                  Follow {c.name}
                  {c.path ? ` (${baseName(c.path)})` : ""}
                </option>
              ))}
            </select>
          )}
          <span class="toolbar-fill" />
          {script && (
            <>
              <button type="button" class="icon" onClick={() => runLine(current)} disabled={!canWrite} title={canWrite ? "Run the line or selection in the console (Ctrl+Enter)" : VIEWER_WHY}>
                Run line
              </button>
              <button type="button" class="icon" data-testid={TID.runButton} disabled={!canWrite} onClick={() => void runFile(current, "run")} title={canWrite ? "Run the file (Ctrl+Shift+Enter)" : VIEWER_WHY}>
                ▶ Run
              </button>
              <button type="button" class="icon" data-testid={TID.sourceButton} disabled={!canWrite} onClick={() => void runFile(current, "source")} title={canWrite ? "Source the file with echo (Ctrl+Shift+S)" : VIEWER_WHY}>
                Source
              </button>
            </>
          )}
          {isDocument(current.path) && (
            <button type="button" class="icon" data-testid={TID.renderButton} disabled={!canWrite} onClick={() => void render(current)} title={canWrite ? "Render the document (Ctrl+Shift+Enter)" : VIEWER_WHY}>
              Render
            </button>
          )}
        </div>
      )}
      <div class="editor-views" id="editor-panel" role={current ? "tabpanel" : undefined} aria-labelledby={current ? tabId(docs.current.indexOf(current)) : undefined}>
        {docs.current.map((d) => (
          <div
            key={d.path}
            class="editor-view"
            hidden={d !== current}
            ref={(el) => {
              if (el && d.view.dom.parentElement !== el) el.appendChild(d.view.dom);
            }}
          />
        ))}
        {!current && <p class="empty muted">Open a file from the Files pane, or create one there.</p>}
      </div>
      {closing && (
        <ConfirmDialog
          title="Unsaved changes"
          message={`${closing.path} has edits the hub has not received (not connected). Close it and lose them?`}
          confirmLabel="Close without saving"
          onClose={() => setClosing(null)}
          onConfirm={() => {
            close(closing);
            setClosing(null);
          }}
        />
      )}
    </div>
  );
}

/** Edits only this window has: typed while the hub was out of reach. */
function unsent(doc: OpenDoc): boolean {
  return doc.dirty && doc.status.state !== "synced";
}
