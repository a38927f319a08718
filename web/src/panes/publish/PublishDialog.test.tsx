import { act } from "preact/test-utils";
import { describe, expect, it } from "vitest";
import { click, fakeCtx, flush, mount, type Call } from "../testing/fakeCtx";
import { rootPerTest } from "../../testing/root";
import { PublishButton } from "./PublishDialog";
import { canManage, splitUrl, versionLabel, type Publication } from "./publications";

let root: HTMLElement;
rootPerTest((el) => (root = el));

const pub = (over: Partial<Publication> = {}): Publication => ({
  id: "p1",
  workspace_id: "w1",
  kind: "document",
  source: "report.html",
  title: "report.html",
  audience: "link",
  url: "/api/pub/p1?token=secret",
  mime: "text/html; charset=utf-8",
  size: 10,
  file_version: 3,
  origin_path: "report.Rmd",
  origin_version: 2,
  rendered_at: "2026-12-06T13:00:00+00:00",
  published_at: "2026-12-06T13:01:00+00:00",
  published_by: "ann",
  created_at: "2026-12-06T13:01:00+00:00",
  ...over,
});

describe("publications helpers", () => {
  it("splits a link and names the versions", () => {
    expect(splitUrl("/api/pub/p1?token=a%2Bb")).toEqual(["/api/pub/p1", { token: "a+b" }]);
    expect(splitUrl("/api/pub/p1")).toEqual(["/api/pub/p1", {}]);
    expect(versionLabel(pub())).toBe("report.html version 3 (source report.Rmd version 2)");
    expect(versionLabel(pub({ kind: "plot" }))).toBe("plot");
    expect([canManage(pub({ role: "owner" })), canManage(pub({ role: "editor" }))]).toEqual([true, true]);
    expect([canManage(pub({ role: "viewer" })), canManage(pub({ role: null })), canManage(pub())]).toEqual([false, false, false]);
  });
});

describe("PublishDialog", () => {
  it("publishes with the chosen audience, shows the link, lists and unpublishes", async () => {
    let list: Publication[] = [];
    const { ctx, calls } = fakeCtx((c: Call) => {
      if (c.method === "GET" && c.path === "/api/workspaces/w1/publications") return list;
      if (c.method === "POST" && c.path === "/api/workspaces/w1/publications") {
        list = [pub({ audience: (c.body as { audience: Publication["audience"] }).audience })];
        return list[0];
      }
      if (c.method === "DELETE" && c.path === "/api/workspaces/w1/publications/p1") {
        list = [];
        return { ok: true };
      }
      return undefined;
    });
    await mount(<PublishButton ctx={ctx} kind="document" source="report.html" />, root);
    await click(root, '[data-testid="publish-open"]');
    await flush();
    expect(root.querySelector('[data-testid="publish-dialog"]')).not.toBeNull();
    const select = root.querySelector('[data-testid="publish-audience"]') as HTMLSelectElement;
    await act(() => {
      select.value = "link";
      select.dispatchEvent(new Event("change", { bubbles: true }));
    });
    await click(root, '[data-testid="publish-submit"]');
    await flush();
    expect(calls.find((c) => c.method === "POST")?.body).toEqual({ kind: "document", source: "report.html", audience: "link" });
    const link = root.querySelector('[data-testid="publish-link"]') as HTMLInputElement;
    expect(link.value).toBe("http://hub.test/api/pub/p1?token=secret");
    expect(root.textContent).toContain("report.html version 3 (source report.Rmd version 2)");
    expect(root.querySelectorAll('[data-testid="publication-row"]').length).toBe(1);
    await click(root, '[data-testid="publication-unpublish"]');
    await flush();
    expect(root.querySelectorAll('[data-testid="publication-row"]').length).toBe(0);
    expect(root.querySelector('[data-testid="publish-current"]')).toBeNull();
  });

  it("shows viewers the list without publishing controls", async () => {
    const { ctx } = fakeCtx((c: Call) => (c.method === "GET" ? [pub({ audience: "members", url: "/api/pub/p1" })] : undefined), { canWrite: false });
    await mount(<PublishButton ctx={ctx} kind="document" source="report.html" />, root);
    await click(root, '[data-testid="publish-open"]');
    await flush();
    expect(root.querySelector('[data-testid="publish-submit"]')).toBeNull();
    expect(root.querySelector('[data-testid="publication-unpublish"]')).toBeNull();
    expect(root.querySelectorAll('[data-testid="publication-row"]').length).toBe(1);
  });
});
