import { describe, expect, it } from "vitest";
import {
  columnAt,
  columnOffsets,
  ensureColumnVisible,
  ensureRowVisible,
  geometry,
  MAX_SCROLL_HEIGHT,
  maxVirtual,
  rowOffset,
  toScroll,
  toVirtual,
  visibleColumns,
  visibleRange,
} from "./virtual";

describe("rows", () => {
  it("maps 1:1 for small tables", () => {
    const g = geometry(1000, 24, 480);
    expect(g.scaled).toBe(false);
    expect(g.content).toBe(24000);
    expect(toVirtual(2400, g)).toBe(2400);
    expect(toScroll(2400, g)).toBe(2400);
    expect(visibleRange(2400, g)).toEqual({ start: 100, end: 120 });
    expect(visibleRange(2410, g, 5)).toEqual({ start: 95, end: 126 });
    expect(rowOffset(100, 2400, 2400, 24)).toBe(2400);
    // past the end: clamped
    expect(toVirtual(1e9, g)).toBe(24000 - 480);
    expect(visibleRange(toVirtual(1e9, g), g)).toEqual({ start: 980, end: 1000 });
  });

  it("scales the scroll position of millions of rows", () => {
    const g = geometry(10_000_000, 24, 600);
    expect(g.scaled).toBe(true);
    expect(g.content).toBe(MAX_SCROLL_HEIGHT);
    expect(toVirtual(0, g)).toBe(0);
    // the bottom of the scroll range is the last row
    const bottom = toVirtual(g.content - g.viewport, g);
    expect(bottom).toBe(maxVirtual(g));
    expect(visibleRange(bottom, g).end).toBe(10_000_000);
    expect(visibleRange(bottom, g).start).toBe(10_000_000 - 25);
    // halfway
    const mid = toVirtual((g.content - g.viewport) / 2, g);
    expect(Math.round(mid / 24)).toBe(Math.round((10_000_000 * 24 - 600) / 2 / 24));
    // round trip
    expect(toVirtual(toScroll(123_456_789, g), g)).toBeCloseTo(123_456_789, 3);
    // rows are drawn relative to the current scrollTop
    const st = 7_000_000;
    const v = toVirtual(st, g);
    const { start } = visibleRange(v, g);
    const y = rowOffset(start, v, st, 24);
    expect(y).toBeLessThanOrEqual(st);
    expect(y).toBeGreaterThan(st - 24);
  });

  it("handles empty tables and tiny viewports", () => {
    const g = geometry(0, 24, 480);
    expect(visibleRange(0, g)).toEqual({ start: 0, end: 0 });
    expect(toScroll(100, g)).toBe(0);
    const h = geometry(3, 24, 480);
    expect(visibleRange(0, h)).toEqual({ start: 0, end: 3 });
    expect(maxVirtual(h)).toBe(0);
  });

  it("scrolls a row into view with the least movement", () => {
    const g = geometry(1000, 20, 200);
    expect(ensureRowVisible(5, 0, g)).toBe(0);
    expect(ensureRowVisible(10, 0, g)).toBe(20);
    expect(ensureRowVisible(3, 100, g)).toBe(60);
    expect(ensureRowVisible(999, 0, g)).toBe(maxVirtual(g));
  });
});

describe("columns", () => {
  const offsets = columnOffsets([100, 50, 200, 100]);
  it("sums widths", () => {
    expect(offsets).toEqual([0, 100, 150, 350, 450]);
  });
  it("finds columns", () => {
    expect(columnAt(0, offsets)).toBe(0);
    expect(columnAt(99, offsets)).toBe(0);
    expect(columnAt(100, offsets)).toBe(1);
    expect(columnAt(449, offsets)).toBe(3);
    expect(columnAt(10_000, offsets)).toBe(3);
    expect(visibleColumns(0, 120, offsets)).toEqual({ start: 0, end: 2 });
    expect(visibleColumns(160, 100, offsets)).toEqual({ start: 2, end: 3 });
    expect(visibleColumns(160, 100, offsets, 1)).toEqual({ start: 1, end: 4 });
    expect(visibleColumns(0, 100, [0])).toEqual({ start: 0, end: 0 });
  });
  it("scrolls a column into view", () => {
    expect(ensureColumnVisible(2, 0, 200, offsets)).toBe(150);
    expect(ensureColumnVisible(0, 150, 200, offsets)).toBe(0);
    expect(ensureColumnVisible(1, 50, 200, offsets)).toBe(50);
    expect(ensureColumnVisible(3, 0, 260, offsets, 60)).toBe(250);
  });
  it("copes with hundreds of thousands of columns", () => {
    const many = columnOffsets(new Array(200_000).fill(120));
    expect(visibleColumns(120 * 150_000 + 5, 600, many)).toEqual({ start: 150_000, end: 150_006 });
  });
});
