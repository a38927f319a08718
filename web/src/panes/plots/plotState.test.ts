import { describe, expect, it } from "vitest";
import { addPlot, current, EMPTY_PLOTS, fromList, go, removePlot, renderSize, setRenderable, tryRender } from "./plotState";

const entry = (id: string) => ({ id, mime: "image/png", width: 504, height: 504 });

describe("plotState", () => {
  it("loads the list and shows the newest; keeps plots seen as events", () => {
    let s = addPlot(EMPTY_PLOTS, { plot_id: "c", renderable: true });
    s = fromList([entry("a"), entry("b")], s);
    expect(s.plots.map((p) => p.id)).toEqual(["a", "b", "c"]);
    expect(s.index).toBe(2);
    expect(s.plots[2]!.renderable).toBe(true);
    // the event's plot in the list later: no duplicate, knowledge kept
    s = fromList([entry("a"), entry("b"), entry("c")], s);
    expect(s.plots.map((p) => [p.id, p.renderable])).toEqual([
      ["a", null],
      ["b", null],
      ["c", true],
    ]);
  });

  it("appends plot events once and shows them", () => {
    let s = fromList([entry("a")]);
    s = go(s, 0);
    s = addPlot(s, { plot_id: "b", mime: "image/png", renderable: true });
    expect(current(s)!.id).toBe("b");
    s = addPlot(s, { plot_id: "b", renderable: true });
    expect(s.plots).toHaveLength(2);
  });

  it("remembers renderability", () => {
    let s = fromList([entry("a")]);
    expect(tryRender(current(s)!)).toBe(true); // unknown: try once
    s = setRenderable(s, "a", false);
    expect(tryRender(current(s)!)).toBe(false);
    expect(setRenderable(s, "a", false)).toBe(s);
  });

  it("removes and pages", () => {
    let s = fromList([entry("a"), entry("b"), entry("c")]);
    s = go(s, 1);
    s = removePlot(s, "a");
    expect(current(s)!.id).toBe("b");
    s = removePlot(s, "b");
    expect(current(s)!.id).toBe("c");
    s = removePlot(s, "c");
    expect(s.index).toBe(-1);
    expect(current(s)).toBeNull();
    s = fromList([entry("a"), entry("b")]);
    expect(go(s, 7).index).toBe(1);
    expect(go(s, -3).index).toBe(0);
    expect(removePlot(s, "b").index).toBe(0);
  });

  it("computes render sizes for the screen", () => {
    expect(renderSize(400, 300, 1)).toEqual({ width: 400, height: 300, res: 96 });
    expect(renderSize(400.4, 300, 2)).toEqual({ width: 801, height: 600, res: 192 });
    expect(renderSize(10, 300, 1)).toBeNull();
    expect(renderSize(5000, 5000, 3)).toEqual({ width: 8000, height: 8000, res: 288 });
    expect(renderSize(400, 300, NaN)).toEqual({ width: 400, height: 300, res: 96 });
  });
});
