// The workspace view's commands (what the command palette lists) and its own keys:
// F1 / Ctrl+Shift+P open the palette, Ctrl+1 … Ctrl+4 move the focus between the panes.
// The editor's and the console's keys are bound where they act (editor/setup.ts,
// console/ConsoleInput.tsx, files/FilesPane.tsx); the palette only names and runs them.
import { useEffect } from "preact/hooks";
import type { Language } from "../contract";
import { LANGUAGE_LABEL } from "../core/workspace";
import type { EditorAction } from "../editor/EditorPane";
import { matchesShortcut, PALETTE_SHORTCUTS, type Command } from "./commands";
import { VIEWER_WHY } from "./model";
import type { ToolTab } from "./testids";
import { TOOL_TABS } from "./ToolTabs";

/** Ctrl+1 … Ctrl+4: where the focus goes (the first of the selectors that exists) */
const FOCUS_TARGETS: Array<[string, string[]]> = [
  ["Files", ["[data-testid=files-pane] [role=treeitem][tabindex='0']", "[data-testid=files-pane] button"]],
  ["Editor", ["[data-testid=editor] .editor-view:not([hidden]) .cm-content", "[data-testid=editor]"]],
  ["Console", ["[data-testid=console] .console-input .cm-content"]],
  ["Tools", [".tool-tabs [role=tab][aria-selected=true]"]],
];

function focusPane(n: number): boolean {
  const el = FOCUS_TARGETS[n]?.[1].map((sel) => document.querySelector<HTMLElement>(sel)).find(Boolean);
  el?.focus();
  return Boolean(el);
}

export interface CommandDeps {
  canWrite: boolean;
  language: Language;
  editor(action: EditorAction): void;
  interrupt(): void;
  restart(): void;
  clearConsole(): void;
  showTool(tab: ToolTab): void;
  openPalette(): void;
}

export function workspaceCommands(d: CommandDeps): Command[] {
  const write = d.canWrite ? undefined : VIEWER_WHY;
  const lang = LANGUAGE_LABEL[d.language];
  const editor = (id: EditorAction, label: string, shortcut: string, writes = true): Command => ({
    id: `editor.${id}`,
    label,
    shortcut,
    group: "Editor",
    run: () => d.editor(id),
    disabled: writes ? write : undefined,
  });
  return [
    { id: "palette", label: "Show the commands and shortcuts", shortcut: PALETTE_SHORTCUTS.join(" / "), group: "Help", run: d.openPalette },
    editor("save", "Save the file", "Ctrl+S"),
    editor("runLine", "Run the line or selection in the console", "Ctrl+Enter"),
    editor("runFile", "Run the file (render a document)", "Ctrl+Shift+Enter"),
    editor("source", "Source the file with echo (also on a file in the Files pane)", "Ctrl+Shift+S"),
    editor("find", "Find and replace in the file", "Ctrl+F", false),
    { id: "console.interrupt", label: "Interrupt what runs", group: "Console", run: d.interrupt, disabled: write },
    { id: "console.restart", label: `Restart ${lang}`, group: "Console", run: d.restart, disabled: write },
    { id: "console.clear", label: "Clear the console", shortcut: "Ctrl+L", group: "Console", run: d.clearConsole },
    ...FOCUS_TARGETS.map(([name], i) => ({
      id: `focus.${name.toLowerCase()}`,
      label: `Go to the ${name} pane`,
      shortcut: `Ctrl+${i + 1}`,
      group: "Focus",
      run: () => void focusPane(i),
    })),
    ...TOOL_TABS.map((t) => ({ id: `tool.${t.key}`, label: `Show ${t.label}`, group: "Tools", run: () => d.showTool(t.key) })),
  ];
}

/** The view's own keys (see the top of this module). */
export function useWorkspaceKeys(openPalette: () => void): void {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (PALETTE_SHORTCUTS.some((s) => matchesShortcut(e, s))) {
        e.preventDefault();
        openPalette();
        return;
      }
      if (!(e.ctrlKey || e.metaKey) || e.altKey || e.shiftKey) return;
      const n = Number(e.key);
      if (n >= 1 && n <= FOCUS_TARGETS.length && focusPane(n - 1)) e.preventDefault();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);
}
