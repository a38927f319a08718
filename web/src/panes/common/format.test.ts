import { describe, expect, it } from "vitest";
import { formatBytes, formatCell, formatCount, formatShape } from "./format";

describe("format", () => {
  it("formats sizes", () => {
    expect(formatBytes(null)).toBe("?");
    expect(formatBytes(undefined)).toBe("?");
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1536)).toBe("1.5 KB");
    expect(formatBytes(5 * 1024 * 1024)).toBe("5.0 MB");
    expect(formatBytes(200 * 1024 * 1024)).toBe("200 MB");
    expect(formatBytes(2048, true)).toBe("~2.0 KB");
  });
  it("formats shapes and counts", () => {
    expect(formatShape([100, 3], 3)).toBe("100 × 3");
    expect(formatShape(null, 1000)).toBe("1,000");
    expect(formatShape(null, null)).toBe("");
    expect(formatCount(1234567)).toBe("1,234,567");
    expect(formatCount(-1000)).toBe("-1,000");
  });
  it("formats cells by language", () => {
    expect(formatCell(true, "r")).toBe("TRUE");
    expect(formatCell(false, "python")).toBe("False");
    expect(formatCell(1.5, "r")).toBe("1.5");
    expect(formatCell("a", "r")).toBe("a");
    expect(formatCell([1], "r")).toBe("[1]");
  });
});
