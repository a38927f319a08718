// One file open in the editor: a shared document. Its text is a Y.Text kept in step with
// the hub's copy by a DocSocket and bound to the CodeMirror view by yCollab (remote cursors
// with names and colours from the awareness, per-user undo). ``version`` is the last file
// version the hub made of it; ``dirty``: this window's document holds edits that are in no
// version yet (the hub makes one on save, before Run/Source/Render, and after idle).
import type { CompletionSource } from "@codemirror/autocomplete";
import { Compartment, EditorState } from "@codemirror/state";
import { EditorView } from "@codemirror/view";
import { yCollab } from "y-codemirror.next";
import { Awareness } from "y-protocols/awareness";
import * as Y from "yjs";
import { baseName } from "../core/files";
import { aheadOf, decodeVector, DocSocket, RESET, type DocState, type HubNote } from "./docSocket";
import { loadSyntax, syntaxForPath } from "./languages";
import { editorState, type EditorActions } from "./setup";

export interface DocDeps {
  actions: EditorActions;
  complete: CompletionSource;
  canWrite: boolean;
  /** this window's user, shown at their cursor in the others' windows */
  user: string;
  /** ws(s)://…/api/workspaces/{id}/doc/{path} */
  url: string;
  /** the dirty flag, the version or the connection changed */
  onChange(): void;
  /** the hub closed the document for good (deleted, access removed, not text) */
  onClosed(doc: OpenDoc, reason: string): void;
  /** the hub's document is a new history: open the file afresh */
  onReset(doc: OpenDoc): void;
  /** a hub note for the user (e.g. a refused edit) */
  onError(message: string): void;
}

/** A colour per user name (the same in every window). */
export function userColour(name: string): { color: string; colorLight: string } {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 360;
  return { color: `hsl(${h} 70% 45%)`, colorLight: `hsl(${h} 70% 45% / 0.25)` };
}

export class OpenDoc {
  readonly view: EditorView;
  readonly ydoc = new Y.Doc();
  readonly awareness = new Awareness(this.ydoc);
  readonly socket: DocSocket;
  private readonly syntax = new Compartment();
  private readonly editable = new Compartment();
  version = 0;
  dirty = false;
  /** deleted on the hub */
  deleted = false;
  saving = false;
  /** the others with this file open (names, sorted) */
  others: string[] = [];
  /** whose cursor this editor scrolls with (null: nobody); the Editor pane decides, also
   * before that user's cursor has arrived (Follow across files opens the file first) */
  following: string | null = null;
  private savedVector: Map<number, number> | null = null;

  constructor(
    public path: string,
    private readonly deps: DocDeps,
  ) {
    const ytext = this.ydoc.getText("content");
    this.awareness.setLocalStateField("user", { name: deps.user, ...userColour(deps.user) });
    this.view = new EditorView({
      state: editorState(ytext.toString(), {
        actions: deps.actions,
        complete: deps.complete,
        canWrite: deps.canWrite,
        syntax: this.syntax,
        editable: this.editable,
        label: `Editor: ${baseName(path)}`,
        collab: yCollab(ytext, this.awareness),
      }),
    });
    this.ydoc.on("update", () => this.updateDirty());
    this.awareness.on("change", () => this.onAwareness());
    this.socket = new DocSocket(
      deps.url,
      this.ydoc,
      this.awareness,
      (s) => this.onStatus(s),
      (n) => this.onNote(n),
    );
    void this.loadSyntax();
  }

  get status(): DocState {
    return this.socket.status;
  }

  text(): string {
    return this.view.state.doc.toString();
  }

  /** Make the text a file version (the hub saves only if it changed); its number. */
  async save(): Promise<number> {
    this.saving = true;
    try {
      const version = await this.socket.save();
      this.version = version;
      return version;
    } finally {
      this.saving = false;
      this.deps.onChange();
    }
  }

  setEditable(canWrite: boolean): void {
    this.view.dispatch({
      effects: this.editable.reconfigure([EditorView.editable.of(canWrite), EditorState.readOnly.of(!canWrite)]),
    });
  }

  destroy(): void {
    this.socket.destroy();
    this.view.destroy();
    this.awareness.destroy();
    this.ydoc.destroy();
  }

  /** Scroll with ``name``'s cursor (null: stop). */
  follow(name: string | null): void {
    if (name === this.following) return;
    this.following = name;
    this.scrollToFollowed();
    this.deps.onChange();
  }

  /** Bring the followed user's cursor into view (when it is known in this file). */
  scrollToFollowed(): void {
    if (!this.following) return;
    let head: unknown;
    for (const [client, state] of this.awareness.getStates()) {
      const name = (state.user as { name?: string } | undefined)?.name;
      if (client !== this.ydoc.clientID && name === this.following) head = (state.cursor as { head?: unknown } | undefined)?.head;
    }
    if (!head) return;
    const pos = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(head), this.ydoc);
    if (pos && pos.index <= this.view.state.doc.length) {
      this.view.dispatch({ effects: EditorView.scrollIntoView(pos.index, { y: "center" }) });
    }
  }

  private onAwareness(): void {
    const names = new Set<string>();
    for (const [client, state] of this.awareness.getStates()) {
      const name = (state.user as { name?: string } | undefined)?.name;
      if (client !== this.ydoc.clientID && name) names.add(name);
    }
    const sorted = [...names].sort();
    if (sorted.join("\n") !== this.others.join("\n")) {
      this.others = sorted;
      this.deps.onChange();
    }
    this.scrollToFollowed();
  }

  private updateDirty(): void {
    const dirty = this.savedVector !== null && aheadOf(this.ydoc, this.savedVector);
    if (dirty !== this.dirty) {
      this.dirty = dirty;
      this.deps.onChange();
    }
  }

  private onStatus(s: DocState): void {
    if (s.state === "synced") this.scrollToFollowed();
    if (s.state === "closed" && s.code === RESET) this.deps.onReset(this);
    else if (s.state === "closed") {
      this.deleted = s.code === 4404;
      this.deps.onClosed(this, s.reason);
    }
    this.deps.onChange();
  }

  private onNote(n: HubNote): void {
    if (n.type === "version" && n.version !== undefined && n.state_vector !== undefined) {
      this.version = n.version;
      this.savedVector = decodeVector(n.state_vector);
      this.updateDirty();
      this.deps.onChange();
    } else if (n.type === "error") {
      this.deps.onError(n.message ?? "The hub refused an edit.");
    }
  }

  private async loadSyntax(): Promise<void> {
    const path = this.path;
    const ext = await loadSyntax(syntaxForPath(path));
    if (this.path === path) this.view.dispatch({ effects: this.syntax.reconfigure(ext) });
  }
}
