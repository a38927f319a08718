import { describe, expect, it, vi } from "vitest";
import { apiError, type Call, click, fakeCtx, flush, mount, setValue } from "../testing/fakeCtx";
import { rootPerTest } from "../../testing/root";
import { HelpPane } from "./HelpPane";

let root: HTMLElement;
rootPerTest((el) => (root = el));

const pages: Record<string, string> = {
  mean:
    '<h2>Arithmetic Mean</h2><p>See <a href="/api/workspaces/w1/help?language=r&amp;topic=sum&amp;format=html" data-help-language="r" data-help-package="base" data-help-topic="sum">sum</a>' +
    ' and <a href="https://www.r-project.org" rel="noopener noreferrer">R</a>.</p>',
  sum: "<h2>Sum of Vector Elements</h2>",
};

function handler(c: Call) {
  if (c.path === "/api/workspaces/w1/help") {
    const topic = String(c.query!.topic);
    if (topic === "plot" && !c.query!.package)
      return {
        kind: "choices",
        topic,
        matches: [
          { topic, package: "base", page: "plot", title: "Generic X-Y Plotting" },
          { topic, package: "graphics", page: "plot.default", title: "The Default Scatterplot Function" },
        ],
      };
    if (topic === "plot") return { kind: "page", topic, package: c.query!.package, title: "t", html: "<p>plot the plot of PLOTS</p>" };
    if (!(topic in pages)) throw apiError(404, "help_not_found", "No help for that");
    return { topic, package: "base", title: topic, html: pages[topic] };
  }
  if (c.path === "/api/workspaces/w1/help/search")
    return {
      query: c.query!.q,
      results: [
        { language: "r", topic: "mean", package: "base", title: "Arithmetic Mean", matched: ["alias"], score: 10 },
        { language: "python", topic: "statistics.mean", package: "", title: "Return the sample arithmetic mean", matched: ["topic"], score: 5 },
      ],
    };
}

describe("HelpPane", () => {
  it("searches, opens a result, follows help links, goes back", async () => {
    const { ctx, calls } = fakeCtx(handler);
    await mount(<HelpPane ctx={ctx} />, root);
    await setValue(root, '[data-testid="help-search-input"]', "mean");
    const form = root.querySelector("form")!;
    form.dispatchEvent(new Event("submit", { cancelable: true }));
    await flush();
    expect(calls.at(-1)).toMatchObject({ path: "/api/workspaces/w1/help/search", query: { q: "mean", limit: 100 } });
    const results = root.querySelectorAll('[data-testid="help-search-result"]');
    expect(results).toHaveLength(2);
    expect(results[1]!.textContent).toContain("Python");
    expect(results[0]!.textContent).toContain("matched: alias");

    await click(root, '[data-testid="help-search-result"]');
    await flush();
    expect(calls.at(-1)!.query).toMatchObject({ language: "r", topic: "mean", package: "base" });
    const page = root.querySelector('[data-testid="help-page"]')!;
    expect(page.innerHTML).toContain("Arithmetic Mean");
    const ext = page.querySelector('a[href^="https"]') as HTMLAnchorElement;
    expect(ext.target).toBe("_blank");
    const open = vi.spyOn(window, "open").mockReturnValue(null);
    await click(page, 'a[href^="https"]');
    expect(open).toHaveBeenCalledWith("https://www.r-project.org", "_blank", "noopener,noreferrer");

    await click(root, "[data-help-topic]");
    await flush();
    expect(calls.at(-1)!.query).toMatchObject({ topic: "sum", package: "base", language: "r" });
    expect(root.querySelector('[data-testid="help-page"]')!.innerHTML).toContain("Sum of Vector");

    const n = calls.length;
    await click(root, '[data-testid="help-back"]');
    await flush();
    expect(root.querySelector('[data-testid="help-page"]')!.innerHTML).toContain("Arithmetic Mean");
    expect(calls.length).toBe(n); // from the cache
    await click(root, '[data-testid="help-back"]');
    await flush();
    expect(root.querySelectorAll('[data-testid="help-search-result"]')).toHaveLength(2);
  });

  it("follows the request prop and explains a missing topic", async () => {
    const { ctx, calls } = fakeCtx(handler);
    await mount(<HelpPane ctx={ctx} request={{ language: "python", topic: "len" }} />, root);
    await flush();
    expect(calls.at(-1)!.query).toMatchObject({ language: "python", topic: "len" });
    expect(root.querySelector('[data-testid="help-error"]')!.textContent).toContain("No help found for “len”");
    await mount(<HelpPane ctx={ctx} request={{ language: "r", topic: "mean" }} />, root);
    await flush();
    expect(root.querySelector('[data-testid="help-page"]')).not.toBeNull();
    await mount(<HelpPane ctx={ctx} request={{ language: "r", query: "regression" }} />, root);
    await flush();
    expect(calls.at(-1)!.query).toMatchObject({ q: "regression", language: "r" });
    expect((root.querySelector('[data-testid="help-search-input"]') as HTMLInputElement).value).toBe("regression");
  });

  it("offers the pages of a topic found in several packages, then finds in the page", async () => {
    const { ctx, calls } = fakeCtx(handler);
    await mount(<HelpPane ctx={ctx} request={{ language: "r", topic: "plot" }} />, root);
    await flush();
    const choices = root.querySelectorAll('[data-testid="help-choice"]');
    expect([...choices].map((c) => c.textContent)).toEqual([
      "base::plot — Generic X-Y Plotting",
      "graphics::plot.default — The Default Scatterplot Function",
    ]);
    await click(root, '[data-testid="help-choice"][data-package="graphics"]');
    await flush();
    expect(calls.at(-1)!.query).toMatchObject({ topic: "plot", package: "graphics" });
    await setValue(root, '[data-testid="help-find-input"]', "plot");
    await flush();
    const count = () => root.querySelector('[data-testid="help-find-count"]')!.textContent;
    expect(root.querySelectorAll('[data-testid="help-page"] mark')).toHaveLength(3);
    expect(count()).toBe("1 of 3");
    await click(root, '[data-testid="help-find-next"]');
    expect(count()).toBe("2 of 3");
    await click(root, '[data-testid="help-find-prev"]');
    await click(root, '[data-testid="help-find-prev"]');
    expect(count()).toBe("3 of 3");
    expect(root.querySelector(".rp-find-current")!.textContent).toBe("PLOT");
    await setValue(root, '[data-testid="help-find-input"]', "zebra");
    expect(count()).toBe("no matches");
  });
});
