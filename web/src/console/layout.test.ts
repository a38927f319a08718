import { describe, expect, it } from "vitest";
import { layout, LINE_H, PLOT_H, plotHeight } from "./layout";
import { ConsoleModel } from "./model";

describe("console layout", () => {
  it("places text lines and plots", () => {
    const m = new ConsoleModel();
    m.write("stdout", "a\nb\n");
    m.plot({ id: "p", url: "/p", mime: "image/png" }, "Plot");
    m.write("stdout", "c\n");
    const l = layout(m);
    expect(l.offset(2)).toBe(2 * LINE_H);
    expect(l.offset(3)).toBe(2 * LINE_H + PLOT_H);
    expect(l.total).toBe(3 * LINE_H + PLOT_H);
    expect(l.lineAt(0)).toBe(0);
    expect(l.lineAt(LINE_H + 1)).toBe(1);
    expect(l.lineAt(2 * LINE_H + 10)).toBe(2);
    expect(l.lineAt(2 * LINE_H + PLOT_H + 1)).toBe(3);
    expect(l.lineAt(1e9)).toBe(3);
  });

  it("fits a plot's row into a short console", () => {
    expect(plotHeight(800)).toBe(PLOT_H);
    expect(plotHeight(250)).toBe(250 - LINE_H);
    expect(plotHeight(50)).toBe(96);
    expect(plotHeight(0)).toBe(PLOT_H);
    const m = new ConsoleModel();
    m.plot({ id: "p", url: "/p", mime: "image/png" }, "Plot");
    m.write("stdout", "c\n");
    expect(layout(m, 200).offset(1)).toBe(200);
  });
});
