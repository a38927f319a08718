// A PaneContext for tests: a fake Api answering from route handlers, a manual event bus.
import { render, type VNode } from "preact";
import { act } from "preact/test-utils";
import { vi } from "vitest";
import { ApiError, type Api, type EventBus, type PaneContext, type Query, type AnyEvent } from "../../contract";

export interface Call {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "BLOB";
  path: string;
  query?: Query;
  body?: unknown;
}

/** A handler answers a call with a value (or throws an ApiError); undefined = no route. */
export type Handler = (call: Call) => unknown;

export class FakeBus implements EventBus {
  private subs = new Set<(ev: AnyEvent, seq: number) => void>();
  private seq = 0;
  subscribe(fn: (ev: AnyEvent, seq: number) => void): () => void {
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }
  emit(ev: AnyEvent): void {
    this.seq++;
    for (const fn of [...this.subs]) fn(ev, this.seq);
  }
  get count(): number {
    return this.subs.size;
  }
}

export function apiError(status: number, code: string, message = code): ApiError {
  return new ApiError(status, code, message);
}

export function fakeCtx(handler: Handler, over: Partial<PaneContext> = {}) {
  const calls: Call[] = [];
  const run = async (call: Call): Promise<unknown> => {
    calls.push(call);
    await Promise.resolve();
    const out = handler(call);
    if (out === undefined) throw new ApiError(404, "no_route", `no fake route for ${call.method} ${call.path}`);
    return await out;
  };
  const api: Api = {
    get: <T>(path: string, query?: Query) => run({ method: "GET", path, query }) as Promise<T>,
    post: <T>(path: string, body?: unknown, query?: Query) => run({ method: "POST", path, body, query }) as Promise<T>,
    put: <T>(path: string, body?: unknown, query?: Query) => run({ method: "PUT", path, body, query }) as Promise<T>,
    patch: <T>(path: string, body?: unknown, query?: Query) => run({ method: "PATCH", path, body, query }) as Promise<T>,
    del: <T>(path: string, query?: Query) => run({ method: "DELETE", path, query }) as Promise<T>,
    blob: (path: string, query?: Query) => run({ method: "BLOB", path, query }) as Promise<Blob>,
    url: (path: string, query?: Query) => {
      const q = Object.entries(query ?? {})
        .filter(([, v]) => v !== undefined && v !== null)
        .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
        .join("&");
      return `http://hub.test${path}${q ? `?${q}` : ""}`;
    },
  };
  const bus = new FakeBus();
  const ctx: PaneContext = {
    workspaceId: "w1",
    api,
    events: bus,
    canWrite: true,
    languages: ["r", "python", "bash"],
    consoleLanguage: "r",
    sessionState: "running",
    openHelp: vi.fn(),
    openDataView: vi.fn(),
    openInViewer: vi.fn(),
    openPlot: vi.fn(),
    notify: vi.fn(),
    ...over,
  };
  return { ctx, calls, bus };
}

/** Render inside act (effects run). */
export async function mount(vnode: VNode, root: HTMLElement): Promise<void> {
  await act(() => {
    render(vnode, root);
  });
}

/** Let pending promises and Preact's scheduled renders run. */
export async function flush(times = 5): Promise<void> {
  for (let i = 0; i < times; i++) {
    await act(async () => {
      await new Promise((r) => setTimeout(r, 0));
    });
  }
}

/** Click an element (found by selector under root) inside act. */
export async function click(root: ParentNode, selector: string, init?: MouseEventInit): Promise<HTMLElement> {
  const el = root.querySelector(selector) as HTMLElement | null;
  if (!el) throw new Error(`nothing matches ${selector}`);
  await act(() => {
    el.dispatchEvent(new MouseEvent("click", { bubbles: true, cancelable: true, ...init }));
  });
  return el;
}

/** Set an input's/select's value and fire input + change inside act. */
export async function setValue(root: ParentNode, selector: string, value: string): Promise<void> {
  const el = root.querySelector(selector) as HTMLInputElement | HTMLSelectElement | null;
  if (!el) throw new Error(`nothing matches ${selector}`);
  await act(() => {
    el.value = value;
    el.dispatchEvent(new Event("input", { bubbles: true }));
    el.dispatchEvent(new Event("change", { bubbles: true }));
  });
}
