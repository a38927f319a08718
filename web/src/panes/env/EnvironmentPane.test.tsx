import { act } from "preact/test-utils";
import { describe, expect, it, vi } from "vitest";
import { apiError, type Call, fakeCtx, flush, mount, click, setValue } from "../testing/fakeCtx";
import { rootPerTest } from "../../testing/root";
import { EnvironmentPane } from "./EnvironmentPane";
import type { VarSummary } from "./types";

function v(name: string, extra: Partial<VarSummary> = {}): VarSummary {
  return {
    name,
    key: name,
    type: "numeric",
    kind: "vector",
    size: 1536,
    length: 3,
    dims: null,
    preview: "1 2 3",
    tabular: false,
    has_children: false,
    ...extra,
  };
}

let root: HTMLElement;
rootPerTest((el) => (root = el));

const names = () => [...root.querySelectorAll('[data-testid="env-row"]')].map((r) => r.getAttribute("data-name"));

describe("EnvironmentPane", () => {
  it("lists variables and applies env events", async () => {
    const { ctx, bus, calls } = fakeCtx((c: Call) => {
      if (c.method === "GET" && c.path === "/api/workspaces/w1/environment")
        return { version: 2, variables: [v("x"), v("df", { tabular: true, dims: [100, 3], size: null, type: "data.frame" })] };
    });
    await mount(<EnvironmentPane ctx={ctx} />, root);
    await flush();
    expect(calls[0]!.query).toMatchObject({ language: "r" });
    expect(names()).toEqual(["df", "x"]);
    const df = root.querySelector('[data-name="df"]')!;
    expect(df.textContent).toContain("100 × 3");
    expect(df.textContent).toContain("?");
    expect(root.querySelector('[data-name="x"]')!.textContent).toContain("1.5 KB");

    await act(() => {
      bus.emit({ type: "env", language: "r", version: 3, assigned: [{ ...v("y") }], removed: ["x"] });
      bus.emit({ type: "env", language: "python", version: 9, assigned: [{ ...v("py") }] });
    });
    expect(names()).toEqual(["df", "y"]);

    // a tabular variable opens in the data viewer
    await act(() => {
      (df as HTMLElement).click();
    });
    expect(ctx.openDataView).toHaveBeenCalledWith({ language: "r", name: "df" });

    // reset: cleared and loaded again
    const before = calls.length;
    await act(() => bus.emit({ type: "env", language: "r", version: 0, reset: true }));
    await flush();
    expect(calls.length).toBe(before + 1);
    expect(names()).toEqual(["df", "x"]);
  });

  it("shows busy, and retries on the next done event", async () => {
    let busy = true;
    const { ctx, bus } = fakeCtx((c) => {
      if (c.path.endsWith("/environment")) {
        if (busy) throw apiError(409, "kernel_busy");
        return { version: 1, variables: [v("z")] };
      }
    });
    await mount(<EnvironmentPane ctx={ctx} />, root);
    await flush(20);
    await new Promise((r) => setTimeout(r, 700)); // the short retries
    await flush();
    expect(root.textContent).toContain("busy — updates when it finishes");
    busy = false;
    await act(() => bus.emit({ type: "done", request_id: "r1", status: "ok" }));
    await flush();
    expect(names()).toEqual(["z"]);
    expect(root.textContent).not.toContain("busy");
  });

  it("shows no session only when the session is not starting or running, and asks again when it runs", async () => {
    let running = false;
    const { ctx, calls } = fakeCtx(
      () => {
        if (!running) throw apiError(409, "session_not_running");
        return { version: 1, variables: [v("x")] };
      },
      { sessionState: "stopped" },
    );
    await mount(<EnvironmentPane ctx={ctx} />, root);
    await flush();
    expect(root.textContent).toContain("no session");
    await mount(<EnvironmentPane ctx={{ ...ctx, sessionState: "starting" }} />, root);
    await flush();
    expect(root.textContent).not.toContain("no session");
    expect(root.textContent).toContain("waiting for the session");
    running = true;
    await mount(<EnvironmentPane ctx={{ ...ctx, sessionState: "running" }} />, root);
    await flush();
    expect(calls.length).toBe(2);
    expect(names()).toEqual(["x"]);
  });

  it("follows the console's language until a language is pinned", async () => {
    const { ctx, calls } = fakeCtx(() => ({ version: 1, variables: [] }));
    await mount(<EnvironmentPane ctx={ctx} />, root);
    await flush();
    expect(calls.at(-1)!.query).toMatchObject({ language: "r" });
    await mount(<EnvironmentPane ctx={{ ...ctx, consoleLanguage: "python" }} />, root);
    await flush();
    expect(calls.at(-1)!.query).toMatchObject({ language: "python" });
    const pin = root.querySelector('[data-testid="env-pin"]')!;
    expect(pin.getAttribute("aria-pressed")).toBe("false");
    await click(root, '[data-testid="env-pin"]');
    expect(pin.getAttribute("aria-pressed")).toBe("true");
    await mount(<EnvironmentPane ctx={{ ...ctx, consoleLanguage: "bash" }} />, root);
    await flush();
    expect(calls.at(-1)!.query).toMatchObject({ language: "python" });
    await click(root, '[data-testid="env-pin"]'); // follow again
    await flush();
    expect(calls.at(-1)!.query).toMatchObject({ language: "bash" });
    await setValue(root, '[data-testid="env-language"]', "r"); // choosing one pins it
    await mount(<EnvironmentPane ctx={{ ...ctx, consoleLanguage: "python" }} />, root);
    await flush();
    expect(calls.at(-1)!.query).toMatchObject({ language: "r" });
    expect(root.querySelector('[data-testid="env-row"]')).toBeNull();
  });

  it("gives the whole name in the name cell's tooltip", async () => {
    const { ctx } = fakeCtx(() => ({ version: 1, variables: [v("puromycin_model_fit")] }));
    await mount(<EnvironmentPane ctx={ctx} />, root);
    await flush();
    expect(root.querySelector('[data-name="puromycin_model_fit"] td')!.getAttribute("title")).toBe("puromycin_model_fit");
  });

  it("switches language, expands children with paging, deletes and clears", async () => {
    const { ctx, calls, bus } = fakeCtx((c) => {
      if (c.method === "GET") return { version: 1, variables: [v("lst", { has_children: true, type: "list" }), v("a")] };
      if (c.method === "POST") {
        const body = c.body as { offset: number };
        const all = Array.from({ length: 150 }, (_, i) => v(`[[${i + 1}]]`, { key: i + 1 }));
        return { total: 150, offset: body.offset, children: all.slice(body.offset, body.offset + 100) };
      }
      if (c.method === "DELETE") return { removed: [] };
    });
    await mount(<EnvironmentPane ctx={ctx} />, root);
    await flush();
    await setValue(root, '[data-testid="env-language"]', "python");
    await flush();
    expect(calls.at(-1)!.query).toMatchObject({ language: "python" });

    await click(root, '[data-testid="env-expand"]');
    await flush();
    expect(calls.at(-1)!.body).toEqual({ language: "python", path: ["lst"], offset: 0, limit: 100 });
    expect(root.querySelectorAll('[data-testid="env-child-row"]').length).toBe(100);
    const more = [...root.querySelectorAll("button")].find((b) => b.textContent?.startsWith("more…"))!;
    await act(() => more.click());
    await flush();
    expect(root.querySelectorAll('[data-testid="env-child-row"]').length).toBe(150);

    // the list changed: its children collapse
    await act(() => bus.emit({ type: "env", language: "python", version: 2, assigned: [{ ...v("lst", { has_children: true }) }] }));
    expect(root.querySelectorAll('[data-testid="env-child-row"]').length).toBe(0);

    await click(root, '[data-name="a"] [data-testid="env-delete"]');
    await flush();
    expect(calls.at(-1)).toMatchObject({ method: "DELETE", path: "/api/workspaces/w1/environment/a", query: { language: "python" } });
    expect(names()).toEqual(["lst"]);

    const confirm = vi.spyOn(window, "confirm").mockReturnValue(true);
    await click(root, '[data-testid="env-clear"]');
    await flush();
    expect(confirm).toHaveBeenCalled();
    expect(calls.at(-1)).toMatchObject({ method: "DELETE", path: "/api/workspaces/w1/environment" });
    expect(names()).toEqual([]);
  });

  it("hides delete and clear for readers", async () => {
    const { ctx } = fakeCtx(() => ({ version: 1, variables: [v("a")] }), { canWrite: false });
    await mount(<EnvironmentPane ctx={ctx} />, root);
    await flush();
    expect(root.querySelector('[data-testid="env-delete"]')).toBeNull();
    expect(root.querySelector('[data-testid="env-clear"]')).toBeNull();
  });
});
