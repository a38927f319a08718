import { act } from "preact/test-utils";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { apiError, type Call, click, fakeCtx, flush, mount } from "../testing/fakeCtx";
import { rootPerTest } from "../../testing/root";
import { PlotsPane } from "./PlotsPane";

let root: HTMLElement;
beforeEach(() => {
  Object.defineProperty(HTMLElement.prototype, "clientWidth", { configurable: true, get: () => 400 });
  Object.defineProperty(HTMLElement.prototype, "clientHeight", { configurable: true, get: () => 300 });
  let n = 0;
  URL.createObjectURL = vi.fn(() => `blob:r${++n}`);
  URL.revokeObjectURL = vi.fn();
});
afterEach(() => {
  delete (HTMLElement.prototype as { clientWidth?: number }).clientWidth;
  delete (HTMLElement.prototype as { clientHeight?: number }).clientHeight;
});
// after the hooks above, so that (hooks being undone as a stack) the root goes first
rootPerTest((el) => (root = el));

const list = [
  { id: "p1", mime: "image/png", width: 504, height: 504 },
  { id: "p2", mime: "image/png", width: 504, height: 504 },
];
const img = () => root.querySelector('[data-testid="plot-image"]') as HTMLImageElement;

describe("PlotsPane", () => {
  it("shows the newest plot re-rendered, pages, and falls back on 409 plot_not_renderable", async () => {
    const { ctx, calls } = fakeCtx((c: Call) => {
      if (c.method === "GET" && c.path === "/api/workspaces/w1/plots") return list;
      if (c.method === "BLOB" && c.path === "/api/workspaces/w1/plots/p2/render") return new Blob(["png"]);
      if (c.method === "BLOB" && c.path === "/api/workspaces/w1/plots/p1/render") throw apiError(409, "plot_not_renderable");
    });
    await mount(<PlotsPane ctx={ctx} />, root);
    await flush();
    expect(root.textContent).toContain("2 of 2");
    const blob = calls.find((c) => c.method === "BLOB")!;
    expect(blob.query).toEqual({ format: "png", width: 400, height: 300, res: 96 });
    expect(img().getAttribute("src")).toBe("blob:r1");
    expect(img().dataset.rendered).toBe("true");
    // renderable now known: the three formats
    const svg = root.querySelector('[data-testid="plot-download-svg"]') as HTMLAnchorElement;
    expect(svg.href).toContain("/plots/p2/render?format=svg");
    expect(svg.href).toContain("download=true");
    expect(root.querySelector('[data-testid="plot-download-pdf"]')).not.toBeNull();

    await click(root, '[data-testid="plot-prev"]');
    await flush();
    expect(root.textContent).toContain("1 of 2");
    expect(img().getAttribute("src")).toBe("http://hub.test/api/workspaces/w1/plots/p1");
    expect(img().dataset.rendered).toBe("false");
    // non-renderable: only the stored image
    expect(root.querySelector('[data-testid="plot-download-svg"]')).toBeNull();
    expect((root.querySelector('[data-testid="plot-download-png"]') as HTMLAnchorElement).href).toBe(
      "http://hub.test/api/workspaces/w1/plots/p1?download=true",
    );
    // tried once only
    await click(root, '[data-testid="plot-next"]');
    await click(root, '[data-testid="plot-prev"]');
    await flush();
    expect(calls.filter((c) => c.path.endsWith("p1/render"))).toHaveLength(1);
  });

  it("appends plot events and deletes", async () => {
    const { ctx, bus, calls } = fakeCtx((c: Call) => {
      if (c.method === "GET") return list;
      if (c.method === "BLOB") return new Blob(["png"]);
      if (c.method === "DELETE") return { ok: true };
    });
    await mount(<PlotsPane ctx={ctx} />, root);
    await flush();
    await act(() => bus.emit({ type: "plot", plot_id: "p3", mime: "image/png", renderable: true, url: "/x" }));
    await flush();
    expect(root.textContent).toContain("3 of 3");
    expect(calls.at(-1)!.path).toBe("/api/workspaces/w1/plots/p3/render");
    expect(root.querySelectorAll('[data-testid="plot-thumb"]')).toHaveLength(3);
    await click(root, '[data-testid="plot-delete"]');
    await flush();
    expect(calls.some((c) => c.method === "DELETE" && c.path === "/api/workspaces/w1/plots/p3")).toBe(true);
    expect(root.textContent).toContain("2 of 2");
  });

  it("waits for the run that drew a plot to finish before drawing it again", async () => {
    const { ctx, bus, calls } = fakeCtx((c: Call) => {
      if (c.method === "GET") return [];
      if (c.method === "BLOB") return new Blob(["png"]);
    });
    await mount(<PlotsPane ctx={ctx} />, root);
    await flush();
    await act(() => bus.emit({ type: "plot", request_id: "r9", plot_id: "p9", mime: "image/png", renderable: true }));
    await flush();
    expect(img().getAttribute("src")).toBe("http://hub.test/api/workspaces/w1/plots/p9");
    expect(calls.some((c) => c.method === "BLOB")).toBe(false);
    await act(() => bus.emit({ type: "done", request_id: "r9", status: "ok" }));
    await flush();
    expect(calls.filter((c) => c.method === "BLOB")).toHaveLength(1);
    expect(img().dataset.rendered).toBe("true");
  });

  it("retries a render after the kernel was busy, and hides delete for readers", async () => {
    let busy = true;
    const { ctx, bus } = fakeCtx(
      (c: Call) => {
        if (c.method === "GET") return list.slice(0, 1);
        if (c.method === "BLOB") {
          if (busy) throw apiError(409, "kernel_busy");
          return new Blob(["png"]);
        }
      },
      { canWrite: false },
    );
    await mount(<PlotsPane ctx={ctx} />, root);
    await flush();
    expect(img().dataset.rendered).toBe("false");
    expect(root.querySelector('[data-testid="plot-delete"]')).toBeNull();
    busy = false;
    await act(() => bus.emit({ type: "done", request_id: "r", status: "ok" }));
    await flush();
    expect(img().dataset.rendered).toBe("true");
  });

  it("shows the plot picked in the console, also before the history is loaded", async () => {
    const { ctx } = fakeCtx((c: Call) => {
      if (c.method === "GET" && c.path === "/api/workspaces/w1/plots") return list;
      if (c.method === "BLOB") return new Blob(["png"]);
    });
    await mount(<PlotsPane ctx={ctx} select={{ id: "p1", n: 1 }} />, root);
    await flush();
    expect(root.textContent).toContain("1 of 2");
    await mount(<PlotsPane ctx={ctx} select={{ id: "p2", n: 2 }} />, root);
    await flush();
    expect(root.textContent).toContain("2 of 2");
    await click(root, '[data-testid="plot-prev"]');
    // the same plot clicked again
    await mount(<PlotsPane ctx={ctx} select={{ id: "p2", n: 3 }} />, root);
    await flush();
    expect(root.textContent).toContain("2 of 2");
    // a plot no longer in the history changes nothing
    await mount(<PlotsPane ctx={ctx} select={{ id: "gone", n: 4 }} />, root);
    await flush();
    expect(root.textContent).toContain("2 of 2");
  });
});

describe("PlotsPane publishing", () => {
  it("publishes the current plot by its id", async () => {
    const { ctx, calls } = fakeCtx((c: Call) => {
      if (c.method === "GET" && c.path === "/api/workspaces/w1/plots") return list;
      if (c.method === "BLOB") return new Blob(["png"]);
      if (c.method === "GET" && c.path === "/api/workspaces/w1/publications") return [];
      if (c.method === "POST" && c.path === "/api/workspaces/w1/publications") return { id: "x" };
    });
    await mount(<PlotsPane ctx={ctx} />, root);
    await flush();
    await click(root, '[data-testid="publish-open"]');
    await flush();
    await click(root, '[data-testid="publish-submit"]');
    await flush();
    expect(calls.find((c) => c.method === "POST")?.body).toEqual({ kind: "plot", source: "p2", audience: "members" });
  });
});
