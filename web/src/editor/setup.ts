// The CodeMirror extensions of a file editor, and the keys bound to the shell's actions.
// Undo/redo come with the shared document (``collab``: yCollab's per-user undo manager).
import { autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap } from "@codemirror/autocomplete";
import { defaultKeymap, indentWithTab } from "@codemirror/commands";
import { bracketMatching, foldGutter, foldKeymap, indentOnInput } from "@codemirror/language";
import { highlightSelectionMatches, search, searchKeymap } from "@codemirror/search";
import { Compartment, EditorState, Prec, type Extension } from "@codemirror/state";
import {
  EditorView,
  drawSelection,
  highlightActiveLine,
  highlightActiveLineGutter,
  highlightSpecialChars,
  keymap,
  lineNumbers,
} from "@codemirror/view";
import type { CompletionSource } from "@codemirror/autocomplete";
import { yUndoManagerKeymap } from "y-codemirror.next";
import { cmTheme } from "./cmTheme";

export interface EditorActions {
  save(): void;
  runLine(): void;
  source(): void;
  runFile(): void;
}

export interface EditorParts {
  actions: EditorActions;
  complete: CompletionSource;
  syntax: Compartment;
  editable: Compartment;
  canWrite: boolean;
  label: string;
  /** the shared document's binding (yCollab: text, remote cursors, undo) */
  collab: Extension;
}

export function editorState(content: string, p: EditorParts): EditorState {
  const run = (fn: () => void) => () => {
    fn();
    return true;
  };
  const extensions: Extension[] = [
    lineNumbers(),
    highlightActiveLineGutter(),
    foldGutter(),
    highlightSpecialChars(),
    drawSelection(),
    indentOnInput(),
    bracketMatching(),
    closeBrackets(),
    highlightActiveLine(),
    highlightSelectionMatches(),
    search({ top: true }),
    autocompletion({ override: [p.complete], activateOnTyping: false }),
    Prec.highest(
      keymap.of([
        { key: "Mod-s", run: run(p.actions.save), preventDefault: true },
        { key: "Mod-Enter", run: run(p.actions.runLine), preventDefault: true },
        { key: "Mod-Shift-s", run: run(p.actions.source), preventDefault: true },
        { key: "Mod-Shift-Enter", run: run(p.actions.runFile), preventDefault: true },
      ]),
    ),
    keymap.of([
      ...closeBracketsKeymap,
      ...defaultKeymap,
      ...searchKeymap,
      ...yUndoManagerKeymap,
      ...foldKeymap,
      ...completionKeymap,
      indentWithTab,
    ]),
    p.collab,
    p.syntax.of([]),
    p.editable.of([EditorView.editable.of(p.canWrite), EditorState.readOnly.of(!p.canWrite)]),
    EditorView.contentAttributes.of({ "aria-label": p.label }),
    cmTheme,
  ];
  return EditorState.create({ doc: content, extensions });
}
