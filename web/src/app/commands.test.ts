import { describe, expect, it, vi } from "vitest";
import { filterCommands, matchesShortcut, type Command } from "./commands";
import { workspaceCommands } from "./workspaceCommands";

const key = (k: string, mods: { ctrl?: boolean; meta?: boolean; shift?: boolean; alt?: boolean } = {}) => ({
  key: k,
  ctrlKey: Boolean(mods.ctrl),
  metaKey: Boolean(mods.meta),
  shiftKey: Boolean(mods.shift),
  altKey: Boolean(mods.alt),
});

describe("commands", () => {
  const list: Command[] = [
    { id: "a", label: "Source the file with echo", shortcut: "Ctrl+Shift+S", group: "Editor", run: () => undefined },
    { id: "b", label: "Restart R", group: "Console", run: () => undefined },
    { id: "c", label: "Clear the console", shortcut: "Ctrl+L", group: "Console", run: () => undefined },
  ];

  it("filters by every word of the query, in any case, over label, group and keys", () => {
    expect(filterCommands(list, "").map((c) => c.id)).toEqual(["a", "b", "c"]);
    expect(filterCommands(list, "console").map((c) => c.id)).toEqual(["b", "c"]);
    expect(filterCommands(list, "  SOURCE  file ").map((c) => c.id)).toEqual(["a"]);
    expect(filterCommands(list, "ctrl+l").map((c) => c.id)).toEqual(["c"]);
    expect(filterCommands(list, "plot")).toEqual([]);
  });

  it("matches keys to shortcuts (Ctrl is Cmd too, modifiers exact)", () => {
    expect(matchesShortcut(key("P", { ctrl: true, shift: true }), "Ctrl+Shift+P")).toBe(true);
    expect(matchesShortcut(key("p", { meta: true, shift: true }), "Ctrl+Shift+P")).toBe(true);
    expect(matchesShortcut(key("p", { ctrl: true }), "Ctrl+Shift+P")).toBe(false);
    expect(matchesShortcut(key("p", { ctrl: true, shift: true, alt: true }), "Ctrl+Shift+P")).toBe(false);
    expect(matchesShortcut(key("F1"), "F1")).toBe(true);
    expect(matchesShortcut(key("F1", { shift: true }), "F1")).toBe(false);
  });

  it("lists the workspace's commands with their keys; a viewer's run commands say why they are off", () => {
    const deps = {
      canWrite: true,
      language: "python" as const,
      editor: vi.fn(),
      interrupt: vi.fn(),
      restart: vi.fn(),
      clearConsole: vi.fn(),
      showTool: vi.fn(),
      openPalette: vi.fn(),
    };
    const cmds = workspaceCommands(deps);
    const byId = new Map(cmds.map((c) => [c.id, c]));
    expect(byId.get("editor.source")?.shortcut).toBe("Ctrl+Shift+S");
    expect(byId.get("palette")?.shortcut).toBe("Ctrl+Shift+P / F1");
    expect(byId.get("console.restart")?.label).toBe("Restart Python");
    expect(byId.get("focus.console")?.shortcut).toBe("Ctrl+3");
    byId.get("editor.source")!.run();
    expect(deps.editor).toHaveBeenCalledWith("source");
    byId.get("tool.plots")!.run();
    expect(deps.showTool).toHaveBeenCalledWith("plots");
    const viewer = new Map(workspaceCommands({ ...deps, canWrite: false }).map((c) => [c.id, c]));
    expect(viewer.get("editor.source")?.disabled).toMatch(/viewer/);
    expect(viewer.get("editor.find")?.disabled).toBeUndefined();
    expect(viewer.get("console.clear")?.disabled).toBeUndefined();
  });
});
