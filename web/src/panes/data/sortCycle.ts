// Sorting by header clicks: a click cycles one column asc → desc → none (and makes it the
// only sort column); shift-click adds the column to the sort (or cycles it in place).
import type { SortKey } from "./types";

export function cycleSort(sort: readonly SortKey[], column: string, additive: boolean): SortKey[] {
  const i = sort.findIndex((k) => k.column === column);
  const cur = i >= 0 ? sort[i]! : null;
  if (!additive) {
    if (cur && sort.length === 1) return cur.descending ? [] : [{ column, descending: true }];
    return [{ column, descending: false }];
  }
  if (!cur) return [...sort, { column, descending: false }];
  if (!cur.descending) return sort.map((k, j) => (j === i ? { column, descending: true } : k));
  return sort.filter((_, j) => j !== i);
}

/** 1-based position of a column in the sort (0: not sorted) and its direction. */
export function sortPosition(sort: readonly SortKey[], column: string): { order: number; descending: boolean } {
  const i = sort.findIndex((k) => k.column === column);
  return { order: i + 1, descending: i >= 0 ? sort[i]!.descending : false };
}

export function ariaSort(sort: readonly SortKey[], column: string): "ascending" | "descending" | "none" {
  const { order, descending } = sortPosition(sort, column);
  if (order === 0) return "none";
  return descending ? "descending" : "ascending";
}
