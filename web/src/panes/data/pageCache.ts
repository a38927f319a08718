// Pages of rows keyed by (query, offset): a view's rows under one sort/filter/search are
// cached page by page (least recently used dropped), with the query's total.
import type { RowsQuery, Scalar } from "./types";

export interface Page {
  offset: number;
  rows: Scalar[][];
  labels: (string | number | null)[] | null;
}

export interface CachedRow {
  cells: Scalar[];
  label: string | number | null;
}

/** A stable key of a query (the view is part of it: a new view gets a new cache). */
export function queryKey(viewId: string, q: RowsQuery): string {
  return JSON.stringify([viewId, q.sort, q.filters, q.search ?? ""]);
}

/** Page offsets covering rows [start, end). */
export function pageOffsets(start: number, end: number, pageSize: number): number[] {
  const out: number[] = [];
  if (end <= start) return out;
  for (let p = Math.floor(start / pageSize) * pageSize; p < end; p += pageSize) out.push(p);
  return out;
}

/** Rows per page: fewer for very wide tables (every row carries all columns). */
export function pageSizeFor(ncol: number, base = 200, maxCells = 50_000): number {
  return Math.max(20, Math.min(base, Math.floor(maxCells / Math.max(1, ncol))));
}

export class PageCache {
  private pages = new Map<string, Page>();
  private totals = new Map<string, number>();

  constructor(
    public readonly pageSize: number,
    private readonly maxPages = 100,
  ) {}

  private k(qk: string, offset: number): string {
    return `${qk}\u0000${offset}`;
  }

  has(qk: string, offset: number): boolean {
    return this.pages.has(this.k(qk, offset));
  }

  get(qk: string, offset: number): Page | undefined {
    const key = this.k(qk, offset);
    const p = this.pages.get(key);
    if (p) {
      // most recently used last
      this.pages.delete(key);
      this.pages.set(key, p);
    }
    return p;
  }

  set(qk: string, page: Page, total: number): void {
    this.totals.set(qk, total);
    const key = this.k(qk, page.offset);
    this.pages.delete(key);
    this.pages.set(key, page);
    while (this.pages.size > this.maxPages) this.pages.delete(this.pages.keys().next().value as string);
  }

  total(qk: string): number | undefined {
    return this.totals.get(qk);
  }

  /** Row i of the query, if its page is here (does not touch the LRU order). */
  row(qk: string, i: number): CachedRow | undefined {
    const offset = Math.floor(i / this.pageSize) * this.pageSize;
    const p = this.pages.get(this.k(qk, offset));
    if (!p) return undefined;
    const cells = p.rows[i - offset];
    if (!cells) return undefined;
    return { cells, label: p.labels ? (p.labels[i - offset] ?? null) : null };
  }

  /** Offsets of the pages covering [start, end) not cached yet. */
  missing(qk: string, start: number, end: number): number[] {
    return pageOffsets(start, end, this.pageSize).filter((o) => !this.has(qk, o));
  }

  clear(): void {
    this.pages.clear();
    this.totals.clear();
  }

  get size(): number {
    return this.pages.size;
  }
}
