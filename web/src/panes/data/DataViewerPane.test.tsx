import { render } from "preact";
import { act } from "preact/test-utils";
import { describe, expect, it } from "vitest";
import { apiError, type Call, click, fakeCtx, flush, mount, setValue } from "../testing/fakeCtx";
import { rootPerTest } from "../../testing/root";
import { type FakeTable, queryRows, TableError } from "../testing/fakeTable";
import { DataViewerPane } from "./DataViewerPane";
import { MAX_SCROLL_HEIGHT } from "./virtual";

let root: HTMLElement;
rootPerTest((el) => (root = el));

const cars: FakeTable = {
  columns: [
    { name: "name", type: "character", index: 0 },
    { name: "mpg", type: "numeric", index: 1 },
    { name: "cyl", type: "numeric", index: 2 },
  ],
  nrow: 6,
  cell: (i, j) =>
    [
      ["Mazda", 21, 6],
      ["Datsun", 22.8, 4],
      ["Hornet", 21.4, null],
      ["Valiant", null, 6],
      ["Duster", 14.3, 8],
      ["Merc", 24.4, 4],
    ][i]![j] as string | number | null,
  label: (i) => `car${i + 1}`,
};

function backend(tables: Record<string, FakeTable>) {
  let seq = 0;
  const views = new Map<string, FakeTable>();
  return (c: Call) => {
    if (c.method === "POST" && c.path === "/api/workspaces/w1/views") {
      const b = c.body as { name: string };
      const t = tables[b.name];
      if (!t) throw apiError(404, "not_found");
      if (t.nrow < 0) throw apiError(422, "not_tabular", "'f' is a function, not a table");
      const id = `v${++seq}`;
      views.set(id, t);
      return { view_id: id, nrow: t.nrow, ncol: t.columns.length, columns: t.columns, language: "r" };
    }
    const m = /^\/api\/workspaces\/w1\/views\/(v\d+)(\/rows)?$/.exec(c.path);
    if (m) {
      const t = views.get(m[1]!);
      if (!t) throw apiError(404, "view_not_found");
      if (c.method === "DELETE") {
        views.delete(m[1]!);
        return { closed: true };
      }
      try {
        return queryRows(t, c.body as Parameters<typeof queryRows>[1]);
      } catch (e) {
        if (e instanceof TableError) throw apiError(422, e.code);
        throw e;
      }
    }
  };
}

const rowsCalls = (calls: Call[]) => calls.filter((c) => c.path.endsWith("/rows"));
const cellTexts = () =>
  [...root.querySelectorAll('[data-testid="data-row"]')].map((r) => [...r.querySelectorAll('[data-testid="data-cell"]')].map((c) => c.textContent));
const wait = (ms: number) => act(() => new Promise<void>((r) => setTimeout(r, ms)));

describe("DataViewerPane", () => {
  it("opens a view, shows rows with labels and NA, sorts by header clicks", async () => {
    const { ctx, calls } = fakeCtx(backend({ cars }));
    await mount(<DataViewerPane ctx={ctx} request={{ language: "r", name: "cars" }} />, root);
    await flush();
    expect(calls[0]).toMatchObject({ method: "POST", path: "/api/workspaces/w1/views", body: { language: "r", name: "cars" } });
    expect(rowsCalls(calls)[0]!.body).toMatchObject({ language: "r", offset: 0, sort: [], filters: [] });
    const grid = root.querySelector('[data-testid="data-grid"]')!;
    expect(grid.getAttribute("role")).toBe("grid");
    expect(grid.getAttribute("aria-rowcount")).toBe("7");
    expect([...root.querySelectorAll('[data-testid="data-header"]')].map((h) => h.getAttribute("data-column"))).toEqual(["name", "mpg", "cyl"]);
    expect(cellTexts()[0]).toEqual(["Mazda", "21", "6"]);
    expect(root.querySelector('[data-row="3"] [role="rowheader"]')!.textContent).toBe("car4");
    const na = root.querySelector('[data-row="3"] .rp-na')!;
    expect(na.textContent).toBe("NA");
    expect(root.querySelector('[data-testid="data-total"]')!.textContent).toContain("6 rows");

    await click(root, '[data-column="mpg"]');
    await wait(100);
    await flush();
    expect(rowsCalls(calls).at(-1)!.body).toMatchObject({ sort: [{ column: "mpg", descending: false }] });
    expect(cellTexts().map((r) => r[1])).toEqual(["14.3", "21", "21.4", "22.8", "24.4", "NA"]);
    expect(root.querySelector('[data-column="mpg"]')!.getAttribute("aria-sort")).toBe("ascending");

    await click(root, '[data-column="cyl"]', { shiftKey: true });
    await wait(100);
    await flush();
    expect(rowsCalls(calls).at(-1)!.body).toMatchObject({
      sort: [
        { column: "mpg", descending: false },
        { column: "cyl", descending: false },
      ],
    });
    expect(root.querySelector('[data-column="cyl"] .rp-dv-sort')!.textContent).toBe("▲2");

    // the sort cycles back: desc, then none
    await click(root, '[data-column="mpg"]');
    await click(root, '[data-column="mpg"]');
    await click(root, '[data-column="mpg"]');
    await wait(100);
    await flush();
    expect(root.querySelector('[data-column="mpg"]')!.getAttribute("aria-sort")).toBe("none");
    expect(cellTexts()[0]).toEqual(["Mazda", "21", "6"]);
  });

  it("filters by typed filters and searches", async () => {
    const { ctx, calls } = fakeCtx(backend({ cars }));
    await mount(<DataViewerPane ctx={ctx} request={{ language: "r", name: "cars" }} />, root);
    await flush();
    await click(root, '[data-testid="data-filter-toggle"]');
    await setValue(root, '[data-testid="data-filter-column"]', "mpg");
    await flush();
    await setValue(root, '[data-testid="data-filter-op"]', "ge");
    await setValue(root, '[data-testid="data-filter-value"]', "abc");
    await click(root, '[data-testid="data-filter-apply"]');
    expect(root.textContent).toContain("“abc” is not a number.");
    await setValue(root, '[data-testid="data-filter-value"]', "21.2");
    await click(root, '[data-testid="data-filter-apply"]');
    await wait(100);
    await flush();
    expect(rowsCalls(calls).at(-1)!.body).toMatchObject({ filters: [{ column: "mpg", op: "ge", value: 21.2 }] });
    expect(cellTexts().map((r) => r[0])).toEqual(["Datsun", "Hornet", "Merc"]);
    expect(root.querySelector('[data-testid="data-total"]')!.textContent).toContain("3 of 6 rows");
    expect(root.querySelector('[data-testid="data-filter-chip"]')!.textContent).toContain("mpg ≥ 21.2");

    // text: in-list; is missing
    await setValue(root, '[data-testid="data-filter-column"]', "cyl");
    await flush();
    await setValue(root, '[data-testid="data-filter-op"]', "is_missing");
    await flush();
    expect(root.querySelector('[data-testid="data-filter-value"]')).toBeNull();
    await click(root, '[data-testid="data-filter-apply"]');
    await wait(100);
    await flush();
    expect(cellTexts().map((r) => r[0])).toEqual(["Hornet"]);

    await click(root, '[data-testid="data-filter-remove"]');
    await click(root, '[data-testid="data-filter-remove"]');
    await wait(100);
    await flush();
    expect(cellTexts()).toHaveLength(6);

    await setValue(root, '[data-testid="data-search"]', "er");
    await wait(400);
    await flush();
    expect(rowsCalls(calls).at(-1)!.body).toMatchObject({ search: "er" });
    expect(cellTexts().map((r) => r[0])).toEqual(["Duster", "Merc"]);
    expect(root.querySelector('[data-testid="data-total"]')!.getAttribute("data-value")).toBe("2");
  });

  it("shows a released view and reopens it; closes views it leaves", async () => {
    const { ctx, calls, bus } = fakeCtx(backend({ cars, other: cars }));
    await mount(<DataViewerPane ctx={ctx} request={{ language: "r", name: "cars" }} />, root);
    await flush();
    await act(() => bus.emit({ type: "view_released", language: "r", view_ids: ["v9"], reason: "x" }));
    expect(root.querySelector('[data-testid="data-released"]')).toBeNull();
    await act(() => bus.emit({ type: "view_released", language: "r", view_ids: ["v1"], reason: "the variable changed or was removed" }));
    expect(root.querySelector('[data-testid="data-released"]')!.textContent).toContain("The variable changed — reload");
    await click(root, '[data-testid="data-reload"]');
    await flush();
    expect(calls.filter((c) => c.method === "POST" && c.path.endsWith("/views"))).toHaveLength(2);
    expect(root.querySelector('[data-testid="data-released"]')).toBeNull();
    expect(calls.some((c) => c.method === "DELETE")).toBe(false); // released views are gone already

    await mount(<DataViewerPane ctx={ctx} request={{ language: "r", name: "other" }} />, root);
    await flush();
    expect(calls.find((c) => c.method === "DELETE")).toMatchObject({ path: "/api/workspaces/w1/views/v2", query: { language: "r" } });
    await act(() => {
      render(null, root);
    });
    await flush();
    expect(calls.filter((c) => c.method === "DELETE").at(-1)!.path).toBe("/api/workspaces/w1/views/v3");
  });

  it("explains errors", async () => {
    const { ctx } = fakeCtx(backend({ f: { ...cars, nrow: -1 } }));
    await mount(<DataViewerPane ctx={ctx} request={{ language: "r", name: "f" }} />, root);
    await flush();
    expect(root.querySelector('[data-testid="data-error"]')!.textContent).toContain("not a table");
    await mount(<DataViewerPane ctx={ctx} request={{ language: "r", name: "nope" }} />, root);
    await flush();
    expect(root.querySelector('[data-testid="data-error"]')!.textContent).toContain("No variable named nope");
  });

  it("virtualises millions of rows and hundreds of columns; arrow keys move", async () => {
    const wide: FakeTable = {
      columns: Array.from({ length: 300 }, (_, j) => ({ name: `c${j}`, type: "integer", index: j })),
      nrow: 5_000_000,
      cell: (i, j) => i * 1000 + j,
    };
    const { ctx, calls } = fakeCtx(backend({ wide }));
    await mount(<DataViewerPane ctx={ctx} request={{ language: "python", name: "wide" }} />, root);
    await flush();
    const canvas = root.querySelector(".rp-dv-canvas") as HTMLElement;
    expect(parseFloat(canvas.style.height)).toBeLessThanOrEqual(MAX_SCROLL_HEIGHT + 100);
    const rows = root.querySelectorAll('[data-testid="data-row"]');
    expect(rows.length).toBeGreaterThan(10);
    expect(rows.length).toBeLessThan(60);
    const headers = root.querySelectorAll('[data-testid="data-header"]');
    expect(headers.length).toBeLessThan(20);
    expect(rowsCalls(calls)[0]!.body).toMatchObject({ language: "python", limit: 166 });

    const grid = root.querySelector('[data-testid="data-grid"]') as HTMLElement;
    const key = (k: string, init: KeyboardEventInit = {}) =>
      act(() => {
        grid.dispatchEvent(new KeyboardEvent("keydown", { key: k, bubbles: true, ...init }));
      });
    await key("ArrowDown");
    await key("ArrowRight");
    expect(grid.getAttribute("aria-activedescendant")).toMatch(/-r0-c1$/);
    await key("End", { ctrlKey: true });
    await wait(50); // effects inside act run when it ends
    await wait(150);
    await flush();
    expect(grid.getAttribute("aria-activedescendant")).toMatch(/-r4999999-c299$/);
    const last = root.querySelector('[data-row="4999999"]');
    expect(last).not.toBeNull();
    // the pages around the viewport, the one holding the visible rows first
    expect(rowsCalls(calls).map((c) => (c.body as { offset: number }).offset)).toEqual([0, 4999920, 4999754]);
    expect(last!.querySelector('[aria-colindex="301"]')!.textContent).toBe(String(4999999 * 1000 + 299));
    // Enter on a header sorts
    await key("Home", { ctrlKey: true });
    await wait(50);
    expect(grid.getAttribute("aria-activedescendant")).toMatch(/-r0-c0$/);
    await key("ArrowUp");
    await key("Enter");
    await wait(100);
    expect(root.querySelector('[data-column="c0"]')!.getAttribute("aria-sort")).toBe("ascending");
  });
});
