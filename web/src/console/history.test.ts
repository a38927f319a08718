import { beforeEach, describe, expect, it } from "vitest";
import { InputHistory } from "./history";

describe("InputHistory", () => {
  beforeEach(() => localStorage.clear());

  it("walks back and forth and restores the draft", () => {
    const h = new InputHistory(null);
    h.add("a <- 1");
    h.add("b <- 2");
    h.add("b <- 2");
    expect(h.newer()).toBeNull();
    expect(h.older("dra")).toBe("b <- 2");
    expect(h.older("b <- 2")).toBe("a <- 1");
    expect(h.older("a <- 1")).toBeNull();
    expect(h.newer()).toBe("b <- 2");
    expect(h.newer()).toBe("dra");
    expect(h.newer()).toBeNull();
  });

  it("persists per key", () => {
    const h = new InputHistory("history.w1");
    h.add("x");
    h.add("  ");
    expect(new InputHistory("history.w1").older("")).toBe("x");
    expect(new InputHistory("history.w2").older("")).toBeNull();
  });
});
