import { render } from "preact";
import { act } from "preact/test-utils";
import { describe, expect, it } from "vitest";
import { fakeCtx, flush, mount } from "../testing/fakeCtx";
import { rootPerTest } from "../../testing/root";
import { HistoryPane } from "./HistoryPane";
import { describeEnvironment, formatDuration, summarizeOutputs, type RunRecord } from "./runs";

let root: HTMLElement;
rootPerTest((el) => (root = el));

function record(over: Partial<RunRecord> = {}): RunRecord {
  return {
    id: "a".repeat(32),
    session_id: "s1",
    request_id: "r1",
    user: "alice",
    kind: "run",
    language: "r",
    path: "fit.R",
    command: "run fit.R",
    via: "ide",
    file_version: 2,
    file_sha256: "f".repeat(64),
    input_count: 3,
    environment: {
      id: "e".repeat(64),
      spawner: "local",
      profile: "local",
      image: null,
      os: "Debian GNU/Linux 12 (bookworm)",
      languages: { r: { version: "4.2.2", packages: 100 } },
    },
    status: "ok",
    error_code: null,
    message: null,
    started_at: "2026-12-06T15:00:00+00:00",
    finished_at: "2026-12-06T15:00:01+00:00",
    duration_ms: 1234,
    transcript: { sha256: "c".repeat(64), bytes: 42, complete: true },
    outputs: [
      { kind: "plot", path: null, version: null, plot_id: "p1", mime: "image/png", sha256: null, size: 10, url: "/api/workspaces/w1/plots/p1" },
      { kind: "file", path: "out.csv", version: 1, plot_id: null, mime: null, sha256: "d".repeat(64), size: 5, url: "/api/workspaces/w1/files/out.csv?version=1" },
    ],
    ...over,
  };
}

const q = (id: string) => root.querySelectorAll(`[data-testid="${id}"]`);

describe("HistoryPane", () => {
  it("lists the records with their outputs and opens one", async () => {
    const { ctx } = fakeCtx((call) => {
      if (call.path === "/api/workspaces/w1/runs") return [record()];
      if (call.path === `/api/workspaces/w1/runs/${"a".repeat(32)}`)
        return { ...record(), inputs: [{ path: "fit.R", version: 2, sha256: "f".repeat(64), size: 9 }] };
      return undefined;
    });
    await mount(<HistoryPane ctx={ctx} />, root);
    await flush();
    expect(q("history-run")).toHaveLength(1);
    expect(q("history-command")[0]!.textContent).toBe("run fit.R v2");
    expect(root.textContent).toContain("1 plot, 1 file");
    expect(root.textContent).toContain("alice · ");
    expect(root.textContent).toContain(" · IDE");
    await act(() => (q("history-run-toggle")[0] as HTMLButtonElement).click());
    await flush();
    expect(q("history-input")[0]!.textContent).toBe(`fit.R v2 ${"f".repeat(12)}`);
    expect((q("history-packages")[0] as HTMLAnchorElement).href).toBe(
      `http://hub.test/api/workspaces/w1/runs/${"a".repeat(32)}/environment`,
    );
    expect(q("history-environment")[0]!.textContent).toContain("R 4.2.2 (100 packages)");
    expect((q("history-plot")[0] as HTMLImageElement).src).toBe("http://hub.test/api/workspaces/w1/plots/p1");
    expect((q("history-output-link")[0] as HTMLAnchorElement).textContent).toBe("out.csv v1");
    expect((q("history-transcript")[0] as HTMLAnchorElement).href).toBe(
      `http://hub.test/api/workspaces/w1/runs/${"a".repeat(32)}/transcript`,
    );
  });

  it("narrows to one file and reloads when a run ends", async () => {
    let n = 0;
    const { ctx, bus, calls } = fakeCtx((call) => {
      if (call.path !== "/api/workspaces/w1/runs") return undefined;
      n++;
      return call.query?.path === "out.csv" ? [record()] : [record(), record({ id: "b".repeat(32), path: "other.R", outputs: [] })];
    });
    await mount(<HistoryPane ctx={ctx} />, root);
    await flush();
    const select = q("history-file")[0] as HTMLSelectElement;
    expect([...select.options].map((o) => o.value)).toEqual(["", "fit.R", "other.R", "out.csv"]);
    select.value = "out.csv";
    await act(() => {
      select.dispatchEvent(new Event("change"));
    });
    await flush();
    expect(calls.at(-1)!.query).toEqual({ path: "out.csv", limit: 100 });
    expect(q("history-run")).toHaveLength(1);
    const before = n;
    await act(() => bus.emit({ type: "done", request_id: "console-line", status: "ok" })); // not a record
    await act(() => new Promise((r) => setTimeout(r, 500)));
    expect(n).toBe(before);
    await act(() => bus.emit({ type: "input", request_id: "r9", user: "u", mode: "run", path: "fit.R" }));
    await act(() => bus.emit({ type: "done", request_id: "r9", status: "ok" }));
    await act(() => new Promise((r) => setTimeout(r, 500)));
    await flush();
    expect(n).toBe(before + 1);
  });

  it("re-runs a record and shows the verdict with its causes; viewers only export", async () => {
    const id = "a".repeat(32);
    const report = {
      reproduced: false,
      verdict: "not reproduced",
      compared: { inputs: 3, transcript: 1 },
      differences: [
        { kind: "input", subject: "data.csv", cause: "input file data.csv changed", details: ["sha256 aaa → bbb"], blocking: true },
        { kind: "environment", subject: "x", cause: "Python package six 1.16.0 → 1.15.0", details: [], blocking: false },
      ],
      workspace: "w rerun aaaa",
    };
    const { ctx, calls } = fakeCtx((call) => {
      if (call.path === "/api/workspaces/w1/runs") return [record()];
      if (call.path === `/api/workspaces/w1/runs/${id}`) return { ...record(), inputs: [] };
      if (call.method === "POST" && call.path === `/api/workspaces/w1/runs/${id}/rerun`)
        return { state: "running", run_id: id, workspace_id: "w2", workspace: "w rerun aaaa", status_url: "/api/workspaces/w2/rerun" };
      if (call.path === "/api/workspaces/w2/rerun") return { state: "done", ...report };
      return undefined;
    });
    await mount(<HistoryPane ctx={ctx} />, root);
    await flush();
    await act(() => (q("history-run-toggle")[0] as HTMLButtonElement).click());
    await flush();
    expect((q("history-export")[0] as HTMLAnchorElement).href).toBe(`http://hub.test/api/workspaces/w1/export?run=${id}`);
    await act(() => (q("history-rerun")[0] as HTMLButtonElement).click());
    await flush();
    expect(calls.at(-1)!.body).toEqual({ ignore: [] });
    expect(q("history-rerun")[0]!.textContent).toBe("Re-running…"); // the hub works on: poll
    await act(() => new Promise((r) => setTimeout(r, 1100))); // one poll (POLL_MS)
    await flush();
    expect(calls.at(-1)!.path).toBe("/api/workspaces/w2/rerun");
    expect(q("history-verdict-badge")[0]!.textContent).toBe("not reproduced");
    expect([...q("history-difference")].map((d) => d.textContent)).toEqual(["input file data.csv changedsha256 aaa → bbb"]);
    expect(root.textContent).toContain("Environment differences (1)");

    render(null, root);
    const viewer = fakeCtx((call) => (call.path === "/api/workspaces/w1/runs" ? [record()] : { ...record(), inputs: [] }), {
      canWrite: false,
    });
    await mount(<HistoryPane ctx={viewer.ctx} />, root);
    await flush();
    await act(() => (q("history-run-toggle")[0] as HTMLButtonElement).click());
    await flush();
    expect(q("history-rerun")).toHaveLength(0);
    expect(q("history-export")).toHaveLength(1);
  });

  it("words", () => {
    expect(formatDuration(null)).toBe("…");
    expect(formatDuration(340)).toBe("340 ms");
    expect(formatDuration(125000)).toBe("2 min 5 s");
    expect(summarizeOutputs([])).toBe("no outputs");
    expect(describeEnvironment({ id: null, spawner: "local", profile: null, image: null })).toBe("not recorded");
  });
});
