import { describe, expect, it, vi } from "vitest";
import { DoneWaiter } from "./doneWaiter";

describe("DoneWaiter", () => {
  it("runs after the next done", () => {
    const w = new DoneWaiter();
    const fn = vi.fn();
    w.after(w.mark(), fn);
    expect(fn).not.toHaveBeenCalled();
    w.done();
    expect(fn).toHaveBeenCalledTimes(1);
    w.done();
    expect(fn).toHaveBeenCalledTimes(1);
  });
  it("runs at once when a done came during the call", () => {
    const w = new DoneWaiter();
    const m = w.mark();
    w.done();
    const fn = vi.fn();
    w.after(m, fn);
    expect(fn).toHaveBeenCalledTimes(1);
  });
  it("forgets waiting work on clear", () => {
    const w = new DoneWaiter();
    const fn = vi.fn();
    w.after(w.mark(), fn);
    w.clear();
    w.done();
    expect(fn).not.toHaveBeenCalled();
  });
});
