// Virtualisation maths of the data grid.
//
// Rows have a fixed height. The scroll container's content is total × rowHeight high, but
// browsers cap an element's height (~33M px in Chrome, less elsewhere), so above
// MAX_SCROLL_HEIGHT the content is capped and the scroll position is scaled: the grid keeps
// a *virtual* offset (pixels into the full table) and maps it to and from the container's
// scrollTop. Visible rows are drawn at `rowOffset` inside the content, i.e. relative to the
// current scrollTop, so they sit where the virtual offset says in both modes.

export const MAX_SCROLL_HEIGHT = 15_000_000;

export interface Geometry {
  total: number;
  rowHeight: number;
  viewport: number; // visible height of the rows area (px)
  full: number; // total × rowHeight
  content: number; // the scroll content's height (≤ MAX_SCROLL_HEIGHT)
  scaled: boolean;
}

export function geometry(total: number, rowHeight: number, viewport: number, max = MAX_SCROLL_HEIGHT): Geometry {
  const full = Math.max(0, total) * rowHeight;
  const content = Math.min(full, max);
  return { total: Math.max(0, total), rowHeight, viewport: Math.max(0, viewport), full, content, scaled: full > max };
}

/** The largest virtual offset (the last rows at the bottom of the viewport). */
export function maxVirtual(g: Geometry): number {
  return Math.max(0, g.full - g.viewport);
}

export function clampVirtual(v: number, g: Geometry): number {
  return Math.min(maxVirtual(g), Math.max(0, v));
}

/** scrollTop → virtual offset */
export function toVirtual(scrollTop: number, g: Geometry): number {
  if (!g.scaled) return clampVirtual(scrollTop, g);
  const maxScroll = g.content - g.viewport;
  if (maxScroll <= 0) return 0;
  return clampVirtual((Math.min(maxScroll, Math.max(0, scrollTop)) / maxScroll) * maxVirtual(g), g);
}

/** virtual offset → scrollTop */
export function toScroll(virtual: number, g: Geometry): number {
  if (!g.scaled) return clampVirtual(virtual, g);
  const mv = maxVirtual(g);
  if (mv <= 0) return 0;
  return (clampVirtual(virtual, g) / mv) * Math.max(0, g.content - g.viewport);
}

/** Rows [start, end) to draw for a virtual offset, with `overscan` rows either side. */
export function visibleRange(virtual: number, g: Geometry, overscan = 0): { start: number; end: number } {
  if (g.total === 0 || g.rowHeight <= 0) return { start: 0, end: 0 };
  const first = Math.floor(virtual / g.rowHeight);
  const last = Math.ceil((virtual + g.viewport) / g.rowHeight);
  return { start: Math.max(0, first - overscan), end: Math.min(g.total, Math.max(first + 1, last) + overscan) };
}

/** Where row `row` goes inside the scroll content (px from the content's top). */
export function rowOffset(row: number, virtual: number, scrollTop: number, rowHeight: number): number {
  return scrollTop + row * rowHeight - virtual;
}

/** The virtual offset that brings `row` fully into view with the least movement. */
export function ensureRowVisible(row: number, virtual: number, g: Geometry): number {
  const top = row * g.rowHeight;
  if (top < virtual) return clampVirtual(top, g);
  if (top + g.rowHeight > virtual + g.viewport) return clampVirtual(top + g.rowHeight - g.viewport, g);
  return virtual;
}

// ---------------------------------------------------------------- columns

/** Left edges of columns: offsets[i] is column i's left, offsets[n] the total width. */
export function columnOffsets(widths: readonly number[]): number[] {
  const out = new Array<number>(widths.length + 1);
  out[0] = 0;
  for (let i = 0; i < widths.length; i++) out[i + 1] = out[i]! + widths[i]!;
  return out;
}

/** The index of the column containing x (binary search over offsets). */
export function columnAt(x: number, offsets: readonly number[]): number {
  const n = offsets.length - 1;
  if (n <= 0) return 0;
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (offsets[mid]! <= x) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Columns [start, end) intersecting [scrollLeft, scrollLeft + width). */
export function visibleColumns(scrollLeft: number, width: number, offsets: readonly number[], overscan = 0): { start: number; end: number } {
  const n = offsets.length - 1;
  if (n <= 0) return { start: 0, end: 0 };
  const first = columnAt(Math.max(0, scrollLeft), offsets);
  const last = columnAt(Math.max(0, scrollLeft + width - 1), offsets);
  return { start: Math.max(0, first - overscan), end: Math.min(n, last + 1 + overscan) };
}

/** The scrollLeft that shows column `col` (after a sticky area of `stickyWidth` px). */
export function ensureColumnVisible(col: number, scrollLeft: number, width: number, offsets: readonly number[], stickyWidth = 0): number {
  const left = offsets[col] ?? 0;
  const right = offsets[col + 1] ?? left;
  const avail = Math.max(0, width - stickyWidth);
  if (left < scrollLeft) return left;
  if (right > scrollLeft + avail) return Math.max(0, right - avail);
  return scrollLeft;
}
