// The IDE's commands as the command palette lists them (label, shortcut, what runs), and
// the pure parts of the palette: matching a typed query, matching a key to a shortcut.

export interface Command {
  id: string;
  label: string;
  /** the keys as shown, e.g. "Ctrl+Shift+S" ("Ctrl" is Cmd on a Mac); several: "F1 / Ctrl+Shift+P" */
  shortcut?: string;
  /** where it applies (shown muted): "Editor", "Console", … */
  group: string;
  run(): void;
  /** why it cannot run now (shown, and the command is skipped) */
  disabled?: string;
}

/** The commands whose label, group or shortcut contain every word of ``query`` (any
 * case), in their order; an empty query lists them all. */
export function filterCommands(commands: Command[], query: string): Command[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return commands;
  return commands.filter((c) => {
    const text = `${c.label} ${c.group} ${c.shortcut ?? ""}`.toLowerCase();
    return words.every((w) => text.includes(w));
  });
}

/** Whether the key event is ``shortcut`` (one of "Ctrl+Shift+P", "F1"; Ctrl matches Cmd). */
export function matchesShortcut(e: Pick<KeyboardEvent, "key" | "ctrlKey" | "metaKey" | "shiftKey" | "altKey">, shortcut: string): boolean {
  const parts = shortcut.split("+");
  const key = parts.pop()?.toLowerCase() ?? "";
  const want = new Set(parts.map((p) => p.toLowerCase()));
  return (
    e.key.toLowerCase() === key &&
    (e.ctrlKey || e.metaKey) === want.has("ctrl") &&
    e.shiftKey === want.has("shift") &&
    e.altKey === want.has("alt")
  );
}

export const PALETTE_SHORTCUTS = ["Ctrl+Shift+P", "F1"];
