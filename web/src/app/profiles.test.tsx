import { render } from "preact";
import { beforeAll, describe, expect, it, vi } from "vitest";
import type { SessionProfile, SparkInfo } from "../contract";
import { apiError, click, fakeCtx, flush, mount, setValue, type Call } from "../panes/testing/fakeCtx";
import { rootPerTest } from "../testing/root";
import { profileLabel, profileResources, sparkUiHref } from "./profiles";
import { SessionProfilePicker } from "./SessionProfilePicker";
import { SparkLink } from "./SparkLink";

const LOCAL: SessionProfile = { name: "local", display_name: "This machine", description: "A session on the hub's own machine.", default: true };
const SMALL: SessionProfile = {
  name: "small",
  display_name: "Small",
  description: "For most work",
  default: true,
  cpu_request: "250m",
  cpu_limit: "2",
  memory_request: "1Gi",
  memory_limit: "4Gi",
  gpu: 0,
};
const GPU: SessionProfile = { ...SMALL, name: "gpu", display_name: "GPU", description: "", default: false, cpu_request: "4", cpu_limit: "4", memory_request: "16Gi", memory_limit: null, gpu: 1 };

// jsdom has no modal dialogs
beforeAll(() => {
  const proto = HTMLDialogElement.prototype as unknown as Record<string, unknown>;
  proto.showModal ??= function (this: HTMLDialogElement) {
    this.setAttribute("open", "");
  };
  proto.close ??= function (this: HTMLDialogElement) {
    this.removeAttribute("open");
  };
});

let root: HTMLElement;
rootPerTest((el) => (root = el));

const SESSION = "/api/workspaces/w1/session";
const q = (sel: string) => root.querySelector(sel) as HTMLElement | null;

function setup(profiles: SessionProfile[] | Error, routes: (c: Call) => unknown = () => undefined) {
  const { ctx, calls } = fakeCtx((c) => {
    if (c.method === "GET" && c.path === "/api/profiles") {
      if (profiles instanceof Error) throw profiles;
      return profiles;
    }
    return routes(c);
  });
  const notify = vi.fn();
  const onRestarted = vi.fn();
  const picker = (state: string, profile: string | null, canWrite = true) => (
    <SessionProfilePicker api={ctx.api} workspaceId="w1" view={{ state, profile }} canWrite={canWrite} notify={notify} onRestarted={onRestarted} />
  );
  const writes = () => calls.filter((c) => c.method !== "GET").map((c) => [c.method, c.path, c.body]);
  return { ctx, calls, notify, onRestarted, picker, writes };
}

describe("profile helpers", () => {
  it("labels profiles with their resources", () => {
    expect(profileResources(LOCAL)).toBe("");
    expect(profileLabel(LOCAL)).toBe("This machine");
    expect(profileLabel(SMALL)).toBe("Small (250m–2 CPU · 1Gi–4Gi)");
    expect(profileLabel(GPU)).toBe("GPU (4 CPU · 16Gi · 1 GPU)");
  });

  it("links the Spark UI only for a same-origin ui_url", () => {
    const info = (ui_url: string | null, mode = "embedded"): SparkInfo => ({ mode, state: "running", remote: null, database: "u_alice", ui_url, detail: "" });
    expect(sparkUiHref(info("/spark-ui/_shared/"))).toBe("/spark-ui/_shared/");
    expect(sparkUiHref(info(null))).toBeNull();
    expect(sparkUiHref(info("/spark-ui/x/", "off"))).toBeNull();
    expect(sparkUiHref(info("//evil.example/"))).toBeNull();
    expect(sparkUiHref(info("javascript:alert(1)"))).toBeNull();
    expect(sparkUiHref(null)).toBeNull();
  });
});

describe("SessionProfilePicker", () => {
  it("shows the profile's name but no picker when only one profile is offered", async () => {
    const { picker } = setup([LOCAL]);
    await mount(picker("running", "local"), root);
    await flush();
    const shown = q('[data-testid="session-profile"]')!;
    expect(shown.textContent).toContain("local");
    expect(shown.dataset.profile).toBe("local");
    expect(shown.title).toContain("This machine");
    expect(q('[data-testid="profile-select"]')).toBeNull();
    // nothing to show before the session says its profile
    await mount(picker("starting", null), root);
    expect(q('[data-testid="session-profile"]')).toBeNull();
  });

  it("shows nothing but the session's profile when the hub has no profiles API", async () => {
    const { picker } = setup(apiError(404, "not_found"));
    await mount(picker("running", "local"), root);
    await flush();
    expect(q('[data-testid="session-profile"]')?.textContent).toContain("local");
    expect(q('[data-testid="profile-select"]')).toBeNull();
  });

  it("offers a labelled select with two profiles, on the session's profile", async () => {
    const { picker } = setup([SMALL, GPU]);
    await mount(picker("running", "gpu"), root);
    await flush();
    const sel = q('[data-testid="profile-select"]') as HTMLSelectElement;
    expect(sel).not.toBeNull();
    expect(sel.getAttribute("aria-label")).toBe("Session profile");
    expect(sel.disabled).toBe(false);
    expect(sel.value).toBe("gpu");
    expect([...sel.options].map((o) => o.textContent)).toEqual([profileLabel(SMALL), profileLabel(GPU)]);
    // the default before the session says; read only for viewers
    await mount(picker("starting", null, false), root);
    expect(sel.value).toBe("small");
    expect(sel.disabled).toBe(true);
  });

  it("asks before switching a running session, then stops it and starts it with the profile", async () => {
    const { picker, writes, notify, onRestarted } = setup([SMALL, GPU], (c) => {
      if (c.path === SESSION && (c.method === "DELETE" || c.method === "POST")) return { id: "s", state: "running", profile: "gpu" };
      return undefined;
    });
    await mount(picker("running", "small"), root);
    await flush();
    await setValue(root, '[data-testid="profile-select"]', "gpu");
    const dialog = q('[data-testid="profile-confirm"]')!;
    expect(dialog).not.toBeNull();
    expect(dialog.textContent).toContain("GPU (4 CPU · 16Gi · 1 GPU)");
    expect(writes()).toEqual([]); // nothing before the confirmation
    expect((q('[data-testid="profile-select"]') as HTMLSelectElement).value).toBe("small");
    await click(dialog, "button.primary");
    await flush();
    expect(writes()).toEqual([
      ["DELETE", SESSION, undefined],
      ["POST", SESSION, { profile: "gpu" }],
    ]);
    expect(onRestarted).toHaveBeenCalledTimes(1);
    expect(notify).toHaveBeenCalledWith(expect.stringContaining("GPU"));
    expect(q('[data-testid="profile-confirm"]')).toBeNull();
  });

  it("does nothing when the confirmation is cancelled", async () => {
    const { picker, writes } = setup([SMALL, GPU], () => ({}));
    await mount(picker("running", "small"), root);
    await flush();
    await setValue(root, '[data-testid="profile-select"]', "gpu");
    const cancel = q('[data-testid="profile-confirm"] button:not(.primary)')!;
    expect(cancel.textContent).toBe("Cancel");
    await click(root, '[data-testid="profile-confirm"] button:not(.primary)');
    await flush();
    expect(q('[data-testid="profile-confirm"]')).toBeNull();
    expect(writes()).toEqual([]);
  });

  it("starts a stopped session with the profile at once, and shows the API's error", async () => {
    const { picker, writes, notify, onRestarted } = setup([SMALL, GPU], (c) => {
      if (c.method === "POST") throw apiError(422, "unknown_profile", "There is no session profile 'gpu' you may use.");
      return undefined;
    });
    await mount(picker("stopped", "small"), root);
    await flush();
    await setValue(root, '[data-testid="profile-select"]', "gpu");
    expect(q('[data-testid="profile-confirm"]')).toBeNull();
    await flush();
    expect(writes()).toEqual([["POST", SESSION, { profile: "gpu" }]]);
    expect(notify).toHaveBeenCalledWith(expect.stringContaining("There is no session profile 'gpu' you may use."), "error");
    expect(onRestarted).not.toHaveBeenCalled();
    expect((q('[data-testid="profile-select"]') as HTMLSelectElement).disabled).toBe(false);
  });
});

describe("SparkLink", () => {
  const spark = (over: Partial<SparkInfo>): SparkInfo => ({ mode: "embedded", state: "running", remote: null, database: "u_alice", ui_url: null, detail: "d", ...over });

  it("links the Spark UI in a new tab when the hub gives a ui_url", async () => {
    const { ctx } = fakeCtx((c) => (c.path === "/api/spark" ? spark({ ui_url: "/spark-ui/_shared/" }) : undefined));
    await mount(<SparkLink api={ctx.api} sessionState="running" />, root);
    await flush();
    const a = q('[data-testid="spark-ui-link"]') as HTMLAnchorElement;
    expect(a).not.toBeNull();
    expect(a.getAttribute("href")).toBe("/spark-ui/_shared/");
    expect(a.target).toBe("_blank");
    expect(a.rel).toBe("noopener noreferrer");
    expect(a.getAttribute("aria-label")).toContain("Spark UI");
  });

  it("shows nothing without a ui_url or with Spark off, and asks again when the session changes", async () => {
    let info = spark({ ui_url: null });
    const { ctx, calls } = fakeCtx((c) => (c.path === "/api/spark" ? info : undefined));
    await mount(<SparkLink api={ctx.api} sessionState="starting" />, root);
    await flush();
    expect(q('[data-testid="spark-ui-link"]')).toBeNull();
    info = spark({ ui_url: "/spark-ui/alice/" });
    await mount(<SparkLink api={ctx.api} sessionState="running" />, root);
    await flush();
    expect(q('[data-testid="spark-ui-link"]')?.getAttribute("href")).toBe("/spark-ui/alice/");

    render(null, root);
    info = spark({ mode: "off", state: "off", ui_url: null });
    const n = calls.length;
    await mount(<SparkLink api={ctx.api} sessionState="running" />, root);
    await flush();
    expect(q('[data-testid="spark-ui-link"]')).toBeNull();
    await mount(<SparkLink api={ctx.api} sessionState="stopped" />, root);
    await flush();
    expect(calls.length).toBe(n + 1); // off: not asked again
  });
});
