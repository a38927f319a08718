import { describe, expect, it } from "vitest";
import { diffLines } from "./diff";

describe("diffLines", () => {
  it("marks inserted, removed and changed lines", () => {
    const d = diffLines(["a", "b", "c", "d"], ["a", "x", "c", "d", "e"]);
    expect([...d.onlyA]).toEqual([1]);
    expect([...d.onlyB].sort()).toEqual([1, 4]);
  });
  it("finds nothing in equal texts", () => {
    const d = diffLines(["a", "b"], ["a", "b"]);
    expect(d.onlyA.size + d.onlyB.size).toBe(0);
  });
});
