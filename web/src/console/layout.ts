// Vertical layout of the virtualised console output: text lines have one fixed height,
// plots another; only the lines in (and near) the visible range are rendered.
import type { ConsoleModel } from "./model";

export const LINE_H = 18;
export const PLOT_H = 320;

export interface Layout {
  total: number;
  /** the top of line i */
  offset(i: number): number;
  /** the line at height y (clamped) */
  lineAt(y: number): number;
}

export function layout(model: ConsoleModel): Layout {
  const n = model.length;
  const plots: number[] = [];
  for (let i = 0; i < n; i++) if (model.line(i).kind === "plot") plots.push(i);
  const extra = PLOT_H - LINE_H;
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
