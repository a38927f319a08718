// An in-memory table answering the views API like the agent would (for tests and the dev
// harness): sort (stable, missing last), filters, search, paging.
import type { Filter, RowsAnswer, Scalar, SortKey, ViewColumn } from "../data/types";

export interface FakeTable {
  columns: ViewColumn[];
  /** row i, column j */
  cell: (i: number, j: number) => Scalar;
  nrow: number;
  label?: (i: number) => string | null;
}

function cmp(a: Scalar, b: Scalar): number {
  if (a === b) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  return a < b ? -1 : 1;
}

function matches(v: Scalar, f: Filter): boolean {
  switch (f.op) {
    case "is_missing":
      return v === null;
    case "not_missing":
      return v !== null;
    default:
      if (v === null) return false;
  }
  const val = f.value ?? null;
  switch (f.op) {
    case "eq":
      return v === val;
    case "ne":
      return v !== val;
    case "lt":
      return val !== null && v < val;
    case "le":
      return val !== null && v <= val;
    case "gt":
      return val !== null && v > val;
    case "ge":
      return val !== null && v >= val;
    case "between":
      return v >= (f.min as Scalar & {}) && v <= (f.max as Scalar & {});
    case "in":
      return (f.values ?? []).includes(v);
    case "contains":
      return String(v).toLowerCase().includes(String(val).toLowerCase());
    case "regex":
      return new RegExp(f.pattern ?? "").test(String(v));
    default:
      return true;
  }
}

export class TableError extends Error {
  constructor(public code: string) {
    super(code);
  }
}

export function queryRows(
  t: FakeTable,
  body: { offset: number; limit: number; sort?: SortKey[]; filters?: Filter[]; search?: string | null },
): RowsAnswer {
  const col = (name: string) => {
    const j = t.columns.findIndex((c) => c.name === name);
    if (j < 0) throw new TableError("unknown_column");
    return j;
  };
  const filters = body.filters ?? [];
  const sort = body.sort ?? [];
  let index: number[] | null = null;
  if (filters.length || sort.length || body.search) {
    index = [];
    const fj = filters.map((f) => col(f.column));
    for (let i = 0; i < t.nrow; i++) {
      if (!filters.every((f, k) => matches(t.cell(i, fj[k]!), f))) continue;
      if (body.search) {
        const s = body.search.toLowerCase();
        if (!t.columns.some((_, j) => String(t.cell(i, j) ?? "").toLowerCase().includes(s))) continue;
      }
      index.push(i);
    }
    const sj = sort.map((k) => col(k.column));
    index.sort((a, b) => {
      for (let k = 0; k < sort.length; k++) {
        const x = t.cell(a, sj[k]!);
        const y = t.cell(b, sj[k]!);
        if (x === null || y === null) {
          const c = cmp(x, y); // missing last in both directions
          if (c) return c;
          continue;
        }
        const c = cmp(x, y) * (sort[k]!.descending ? -1 : 1);
        if (c) return c;
      }
      return a - b;
    });
  }
  const total = index ? index.length : t.nrow;
  const rows: Scalar[][] = [];
  const labels: (string | null)[] = [];
  for (let k = body.offset; k < Math.min(total, body.offset + body.limit); k++) {
    const i = index ? index[k]! : k;
    rows.push(t.columns.map((_, j) => t.cell(i, j)));
    labels.push(t.label ? t.label(i) : String(i + 1));
  }
  return { total, offset: body.offset, columns: t.columns.map((c) => c.name), rows, row_labels: labels, recomputed: true };
}
