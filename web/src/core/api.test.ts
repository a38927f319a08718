import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError } from "../contract";
import { buildUrl, createApi, csrfToken, encodePath } from "./api";

describe("api", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("reads the CSRF cookie and builds URLs", () => {
    expect(csrfToken("a=1; rsparkhub_csrf=tok%3D; b=2")).toBe("tok=");
    expect(csrfToken("a=1")).toBe("");
    expect(buildUrl("/api/x", { a: 1, b: null, c: "d e" })).toBe("/api/x?a=1&c=d+e");
    expect(encodePath("dir/a b#.R")).toBe("dir/a%20b%23.R");
  });

  it("sends JSON with the CSRF header and throws the hub's errors", async () => {
    document.cookie = "rsparkhub_csrf=secret";
    const fetchMock = vi.fn(async (_url: string, _init: RequestInit) =>
      new Response(JSON.stringify({ error: { code: "version_conflict", message: "changed" } }), {
        status: 409,
        headers: { "content-type": "application/json" },
      }),
    );
    vi.stubGlobal("fetch", fetchMock);
    const api = createApi();
    const err = await api.put("/api/workspaces/w/text/a.R", { content: "x", base_version: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 409, code: "version_conflict", message: "changed" });
    const init = fetchMock.mock.calls[0][1];
    expect(init.method).toBe("PUT");
    expect((init.headers as Record<string, string>)["X-CSRF-Token"]).toBe("secret");
    expect(init.body).toBe('{"content":"x","base_version":1}');
  });

  it("reports a lost login", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => new Response("{}", { status: 401, headers: { "content-type": "application/json" } })));
    const lost = vi.fn();
    await expect(createApi(lost).get("/api/me")).rejects.toMatchObject({ status: 401 });
    expect(lost).toHaveBeenCalled();
  });
});
