import { describe, expect, it } from "vitest";
import { looksComplete } from "./complete";

describe("looksComplete", () => {
  it("sees open brackets, strings and blocks", () => {
    expect(looksComplete("1 + 1", "r")).toBe(true);
    expect(looksComplete("f <- function(x) {", "r")).toBe(false);
    expect(looksComplete('s <- "abc', "r")).toBe(false);
    expect(looksComplete("for i in range(3):", "python")).toBe(false);
    expect(looksComplete("for i in range(3):\n    print(i)\n    ", "python")).toBe(true);
    expect(looksComplete("ls \\", "bash")).toBe(false);
  });
});
