import { describe, expect, it } from "vitest";
import { PageCache, pageOffsets, pageSizeFor, queryKey } from "./pageCache";
import { RowLoader } from "./rowLoader";
import type { RowsAnswer, RowsQuery } from "./types";

const q0: RowsQuery = { sort: [], filters: [], search: null };

describe("PageCache", () => {
  it("keys queries and pages", () => {
    expect(queryKey("v1", q0)).toBe(queryKey("v1", { sort: [], filters: [], search: "" }));
    expect(queryKey("v1", q0)).not.toBe(queryKey("v2", q0));
    expect(queryKey("v1", { ...q0, sort: [{ column: "a", descending: true }] })).not.toBe(queryKey("v1", q0));
    expect(pageOffsets(150, 420, 100)).toEqual([100, 200, 300, 400]);
    expect(pageOffsets(5, 5, 100)).toEqual([]);
    expect(pageSizeFor(10)).toBe(200);
    expect(pageSizeFor(1000)).toBe(50);
    expect(pageSizeFor(100_000)).toBe(20);
  });

  it("stores pages, rows, totals; drops the least recently used", () => {
    const c = new PageCache(10, 3);
    const page = (offset: number) => ({ offset, rows: Array.from({ length: 10 }, (_, i) => [offset + i]), labels: null });
    c.set("q", page(0), 100);
    c.set("q", page(10), 100);
    c.set("q", page(20), 100);
    expect(c.row("q", 15)).toEqual({ cells: [15], label: null });
    expect(c.total("q")).toBe(100);
    expect(c.missing("q", 5, 45)).toEqual([30, 40]);
    c.get("q", 0); // used: page 10 is now the oldest
    c.set("q", page(30), 100);
    expect(c.has("q", 10)).toBe(false);
    expect(c.has("q", 0)).toBe(true);
    expect(c.row("other", 1)).toBeUndefined();
    c.set("l", { offset: 0, rows: [[1], [2]], labels: ["a", "b"] }, 2);
    expect(c.row("l", 1)).toEqual({ cells: [2], label: "b" });
    expect(c.row("l", 2)).toBeUndefined();
  });
});

describe("RowLoader", () => {
  function setup(total = 1000) {
    const cache = new PageCache(100);
    const requests: { query: RowsQuery; offset: number; resolve: (a: RowsAnswer) => void; reject: (e: unknown) => void }[] = [];
    const loaded: string[] = [];
    const errors: unknown[] = [];
    const loader = new RowLoader(
      "v1",
      cache,
      (query, offset, limit) =>
        new Promise<RowsAnswer>((resolve, reject) => {
          requests.push({ query, offset, resolve, reject });
          void limit;
        }),
      (qk) => loaded.push(qk),
      (e) => errors.push(e),
    );
    const answer = (i: number) => {
      const r = requests[i]!;
      const n = Math.max(0, Math.min(100, total - r.offset));
      r.resolve({ total, offset: r.offset, columns: ["x"], rows: Array.from({ length: n }, (_, k) => [r.offset + k]) });
    };
    return { cache, loader, requests, loaded, errors, answer };
  }
  const tick = () => new Promise((r) => setTimeout(r, 0));

  it("asks one page at a time, for what is wanted now", async () => {
    const { loader, requests, answer, cache } = setup();
    loader.want(0, 30);
    loader.want(0, 30);
    expect(requests.map((r) => r.offset)).toEqual([0]);
    loader.want(450, 520); // scrolled on while the first page loads
    answer(0);
    await tick();
    expect(requests.map((r) => r.offset)).toEqual([0, 400]);
    answer(1);
    await tick();
    expect(requests.map((r) => r.offset)).toEqual([0, 400, 500]);
    answer(2);
    await tick();
    expect(requests).toHaveLength(3);
    expect(cache.row(loader.key, 512)).toEqual({ cells: [512], label: null });
  });

  it("clamps to the total and restarts for a new query", async () => {
    const { loader, requests, answer } = setup(150);
    loader.want(0, 500);
    answer(0);
    await tick();
    answer(1);
    await tick();
    expect(requests.map((r) => r.offset)).toEqual([0, 100]);
    const sorted: RowsQuery = { ...q0, sort: [{ column: "x", descending: true }] };
    loader.setQuery(sorted);
    expect(requests.at(-1)!.query).toBe(sorted);
    expect(requests.at(-1)!.offset).toBe(0);
  });

  it("stops on an error until retry", async () => {
    const { loader, requests, errors, answer } = setup();
    loader.want(0, 50);
    requests[0]!.reject(new Error("boom"));
    await tick();
    expect(errors).toHaveLength(1);
    loader.want(0, 60);
    expect(requests).toHaveLength(1);
    loader.retry();
    expect(requests).toHaveLength(2);
    answer(1);
    await tick();
    expect(errors).toHaveLength(1);
  });

  it("ignores answers after dispose", async () => {
    const { loader, requests, loaded, answer } = setup();
    loader.want(0, 50);
    loader.dispose();
    answer(0);
    await tick();
    expect(loaded).toEqual([]);
    expect(requests).toHaveLength(1);
  });
});
