// One file open in the editor: its CodeMirror view and what the hub knows of it (the
// version this edit is based on, the content saved at that version).
import type { CompletionSource } from "@codemirror/autocomplete";
import { Compartment } from "@codemirror/state";
import { EditorView } from "@codemirror/view";
import { baseName } from "../core/files";
import { loadSyntax, syntaxForPath } from "./languages";
import { editorState, type EditorActions } from "./setup";

export interface DocDeps {
  actions: EditorActions;
  complete: CompletionSource;
  canWrite: boolean;
  /** the dirty flag changed */
  onDirty(): void;
}

export class OpenDoc {
  readonly view: EditorView;
  private readonly syntax = new Compartment();
  private readonly editable = new Compartment();
  dirty = false;
  /** changed on the hub while edited here */
  stale = false;
  /** deleted on the hub */
  deleted = false;
  saving = false;

  constructor(
    public path: string,
    public version: number,
    public saved: string,
    deps: DocDeps,
  ) {
    this.view = new EditorView({
      state: editorState(saved, {
        actions: deps.actions,
        complete: deps.complete,
        canWrite: deps.canWrite,
        syntax: this.syntax,
        editable: this.editable,
        label: `Editor: ${baseName(path)}`,
        onUpdate: (u) => {
          if (!u.docChanged) return;
          const dirty = u.state.doc.length !== this.saved.length || u.state.doc.toString() !== this.saved;
          if (dirty !== this.dirty) {
            this.dirty = dirty;
            deps.onDirty();
          }
        },
      }),
    });
    void this.loadSyntax();
  }

  text(): string {
    return this.view.state.doc.toString();
  }

  /** After a save (or a reload): the hub has ``content`` as ``version``. */
  markSaved(content: string, version: number): void {
    this.saved = content;
    this.version = version;
    this.stale = false;
    this.deleted = false;
    this.dirty = this.text() !== content;
  }

  /** Replace the text with the hub's (keeps the cursor where it can). */
  replace(content: string, version: number): void {
    const head = Math.min(this.view.state.selection.main.head, content.length);
    this.saved = content;
    this.view.dispatch({ changes: { from: 0, to: this.view.state.doc.length, insert: content }, selection: { anchor: head } });
    this.markSaved(content, version);
  }

  rename(path: string): void {
    this.path = path;
    void this.loadSyntax();
  }

  setEditable(canWrite: boolean): void {
    this.view.dispatch({ effects: this.editable.reconfigure(EditorView.editable.of(canWrite)) });
  }

  destroy(): void {
    this.view.destroy();
  }

  private async loadSyntax(): Promise<void> {
    const path = this.path;
    const ext = await loadSyntax(syntaxForPath(path));
    if (this.path === path) this.view.dispatch({ effects: this.syntax.reconfigure(ext) });
  }
}
