// Fetches the pages of rows the grid needs, one request at a time (the session answers one
// call per language at a time: parallel calls would get kernel_busy), nearest to the
// viewport first. Answers for an older query or range are cached but wanted no more; a
// changed range or query takes effect at the next request.
import { type PageCache, queryKey } from "./pageCache";
import type { RowsAnswer, RowsQuery } from "./types";

export type FetchRows = (query: RowsQuery, offset: number, limit: number) => Promise<RowsAnswer>;

export class RowLoader {
  private query: RowsQuery = { sort: [], filters: [], search: null };
  private qk = "";
  private start = 0;
  private end = 0;
  private inFlight = false;
  private stopped = false;
  private failedKey: string | null = null;
  private gen = 0;

  constructor(
    private readonly viewId: string,
    private readonly cache: PageCache,
    private readonly fetchRows: FetchRows,
    private readonly onLoaded: (qk: string) => void,
    private readonly onError: (err: unknown, qk: string) => void,
  ) {
    this.qk = queryKey(viewId, this.query);
  }

  get key(): string {
    return this.qk;
  }

  setQuery(q: RowsQuery): void {
    const qk = queryKey(this.viewId, q);
    if (qk === this.qk) return;
    this.query = q;
    this.qk = qk;
    this.failedKey = null;
    this.pump();
  }

  /** The rows [start, end) the grid shows (plus overscan). */
  want(start: number, end: number): void {
    this.start = Math.max(0, start);
    this.end = Math.max(this.start, end);
    this.pump();
  }

  /** After an error: try again (the failed page). */
  retry(): void {
    this.failedKey = null;
    this.pump();
  }

  dispose(): void {
    this.stopped = true;
    this.gen++;
  }

  /** The next page to ask for, or null. */
  next(): number | null {
    const total = this.cache.total(this.qk);
    const end = total === undefined ? Math.max(this.end, 1) : Math.min(this.end, total);
    const missing = this.cache.missing(this.qk, this.start, end);
    if (total === undefined && missing.length === 0 && !this.cache.has(this.qk, 0)) return 0;
    if (missing.length === 0) return null;
    if (total === undefined) return missing[0]!; // learn the total first
    // nearest to the middle of the wanted rows (the viewport) first
    const mid = (this.start + end) / 2;
    const half = this.cache.pageSize / 2;
    let best = missing[0]!;
    for (const o of missing) if (Math.abs(o + half - mid) < Math.abs(best + half - mid)) best = o;
    return best;
  }

  private pump(): void {
    if (this.inFlight || this.stopped) return;
    const offset = this.next();
    if (offset === null) return;
    const fk = `${this.qk}@${offset}`;
    if (this.failedKey === fk) return; // wait for retry()
    const qk = this.qk;
    const query = this.query;
    const my = this.gen;
    this.inFlight = true;
    this.fetchRows(query, offset, this.cache.pageSize).then(
      (a) => {
        if (my !== this.gen) return;
        this.inFlight = false;
        this.cache.set(
          qk,
          { offset, rows: Array.isArray(a.rows) ? a.rows : [], labels: Array.isArray(a.row_labels) ? a.row_labels : null },
          Number(a.total) || 0,
        );
        this.onLoaded(qk);
        this.pump();
      },
      (err: unknown) => {
        if (my !== this.gen) return;
        this.inFlight = false;
        if (qk === this.qk) {
          this.failedKey = fk;
          this.onError(err, qk);
        }
        this.pump(); // the query changed meanwhile: go on with the new one
      },
    );
  }
}
