import { describe, expect, it } from "vitest";
import { ariaSort, cycleSort, sortPosition } from "./sortCycle";

const asc = (column: string) => ({ column, descending: false });
const desc = (column: string) => ({ column, descending: true });

describe("cycleSort", () => {
  it("cycles one column asc → desc → none", () => {
    let s = cycleSort([], "a", false);
    expect(s).toEqual([asc("a")]);
    s = cycleSort(s, "a", false);
    expect(s).toEqual([desc("a")]);
    s = cycleSort(s, "a", false);
    expect(s).toEqual([]);
  });
  it("a plain click on another column replaces the sort", () => {
    expect(cycleSort([asc("a")], "b", false)).toEqual([asc("b")]);
    // a column of a multi-column sort becomes the only one, ascending
    expect(cycleSort([asc("a"), desc("b")], "b", false)).toEqual([asc("b")]);
  });
  it("shift-click adds columns and cycles them in place", () => {
    let s = cycleSort([asc("a")], "b", true);
    expect(s).toEqual([asc("a"), asc("b")]);
    s = cycleSort(s, "b", true);
    expect(s).toEqual([asc("a"), desc("b")]);
    s = cycleSort(s, "a", true);
    expect(s).toEqual([desc("a"), desc("b")]);
    s = cycleSort(s, "a", true);
    expect(s).toEqual([desc("b")]);
  });
  it("reports positions and aria-sort", () => {
    const s = [asc("a"), desc("b")];
    expect(sortPosition(s, "b")).toEqual({ order: 2, descending: true });
    expect(sortPosition(s, "c")).toEqual({ order: 0, descending: false });
    expect(ariaSort(s, "a")).toBe("ascending");
    expect(ariaSort(s, "b")).toBe("descending");
    expect(ariaSort(s, "c")).toBe("none");
  });
});
