import { act } from "preact/test-utils";
import { describe, expect, it } from "vitest";
import { fakeCtx, mount } from "../testing/fakeCtx";
import { rootPerTest } from "../../testing/root";
import { ViewerPane } from "./ViewerPane";

let root: HTMLElement;
rootPerTest((el) => (root = el));
const frame = () => root.querySelector('[data-testid="viewer-frame"]') as HTMLElement;

describe("ViewerPane", () => {
  it("shows html sandboxed without same-origin, and reloads on a document event", async () => {
    const { ctx, bus } = fakeCtx(() => undefined);
    await mount(<ViewerPane ctx={ctx} path="out/my report.html" />, root);
    const f = frame() as HTMLIFrameElement;
    expect(f.tagName).toBe("IFRAME");
    expect(f.getAttribute("sandbox")).toBe("allow-scripts allow-popups");
    expect(f.getAttribute("src")).toBe("http://hub.test/api/workspaces/w1/raw/out/my%20report.html");
    const pop = root.querySelector('[data-testid="viewer-popout"]') as HTMLAnchorElement;
    expect(pop.target).toBe("_blank");
    expect(pop.rel).toContain("noopener");
    await act(() => bus.emit({ type: "document", request_id: "r", path: "x.Rmd", output: "other.html", format: "html", engine: "rmarkdown" }));
    expect(frame()).toBe(f);
    await act(() => bus.emit({ type: "document", request_id: "r", path: "x.Rmd", output: "./out/my report.html", format: "html", engine: "rmarkdown" }));
    expect(frame()).not.toBe(f);
    expect(frame().getAttribute("src")).toContain("_r=1");
  });

  it("shows pdf unsandboxed, images as img, others as a download", async () => {
    const { ctx } = fakeCtx(() => undefined);
    await mount(<ViewerPane ctx={ctx} path="doc.pdf" />, root);
    expect(frame().tagName).toBe("IFRAME");
    expect(frame().hasAttribute("sandbox")).toBe(false);
    await mount(<ViewerPane ctx={ctx} path="fig.png" />, root);
    expect(frame().tagName).toBe("IMG");
    await mount(<ViewerPane ctx={ctx} path="model.rds" />, root);
    expect(frame()).toBeNull();
    expect((root.querySelector('[data-testid="viewer-download"]') as HTMLAnchorElement).href).toBe(
      "http://hub.test/api/workspaces/w1/files/model.rds?download=true",
    );
    await mount(<ViewerPane ctx={ctx} path={null} />, root);
    expect(root.querySelector('[data-testid="viewer-pane"]')).not.toBeNull();
  });
});
