// Vertical layout of the virtualised console output: text lines have one fixed height,
// plots another; only the lines in (and near) the visible range are rendered.
import type { ConsoleModel } from "./model";

export const LINE_H = 18;
export const PLOT_H = 320;
const PLOT_MIN_H = 96;
/** the row's padding and the image's border: what a plot's image leaves of its row */
export const PLOT_FRAME = 12;

/** A plot's row height for an output area this tall: PLOT_H, less in a short console, so
 * that a whole inline plot fits in the visible area with a line of text. */
export function plotHeight(viewportHeight: number): number {
  if (!(viewportHeight > 0)) return PLOT_H;
  return Math.max(PLOT_MIN_H, Math.min(PLOT_H, Math.floor(viewportHeight) - LINE_H));
}

export interface Layout {
  total: number;
  /** the top of line i */
  offset(i: number): number;
  /** the line at height y (clamped) */
  lineAt(y: number): number;
}

export function layout(model: ConsoleModel, plotH: number = PLOT_H): Layout {
  const n = model.length;
  const plots: number[] = [];
  for (let i = 0; i < n; i++) if (model.line(i).kind === "plot") plots.push(i);
  const extra = plotH - LINE_H;
  /** plots before line i */
  const before = (i: number): number => {
    let lo = 0;
    let hi = plots.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (plots[mid] < i) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const offset = (i: number): number => i * LINE_H + before(i) * extra;
  return {
    total: offset(n),
    offset,
    lineAt(y: number): number {
      let lo = 0;
      let hi = Math.max(0, n - 1);
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (offset(mid) <= y) lo = mid;
        else hi = mid - 1;
      }
      return lo;
    },
  };
}
