import { describe, expect, it } from "vitest";
import {
  appendChildren,
  envLanguage,
  envNotice,
  applyEnvEvent,
  applyEnvEvents,
  listingFromAnswer,
  pathKey,
  pruneExpanded,
} from "./envState";
import type { EnvEvent, VarSummary } from "./types";

function v(name: string, extra: Partial<VarSummary> = {}): VarSummary {
  return {
    name,
    key: name,
    type: "numeric",
    kind: "vector",
    size: 56,
    length: 1,
    dims: null,
    preview: "1",
    tabular: false,
    has_children: false,
    ...extra,
  };
}

const ev = (e: Partial<EnvEvent>): EnvEvent => ({ type: "env", language: "r", version: 1, ...e });

describe("envState", () => {
  it("sorts a listing by name, case-insensitively", () => {
    const l = listingFromAnswer({ version: 3, variables: [v("b"), v("A"), v("a")] });
    expect(l.variables.map((x) => x.name)).toEqual(["A", "a", "b"]);
    expect(l.version).toBe(3);
  });

  it("upserts assigned and deletes removed names", () => {
    const l = listingFromAnswer({ version: 1, variables: [v("x"), v("y", { preview: "old" })] });
    const r = applyEnvEvent(l, ev({ version: 2, assigned: [v("y", { preview: "new" }), v("a")], removed: ["x"] }));
    expect(r.reload).toBe(false);
    expect(r.listing.version).toBe(2);
    expect(r.listing.variables.map((x) => [x.name, x.preview])).toEqual([
      ["a", "1"],
      ["y", "new"],
    ]);
    expect(r.changed.sort()).toEqual(["a", "x", "y"]);
    // the input is left alone
    expect(l.variables.map((x) => x.name)).toEqual(["x", "y"]);
  });

  it("ignores events already contained in the listing", () => {
    const l = listingFromAnswer({ version: 5, variables: [v("x")] });
    const r = applyEnvEvent(l, ev({ version: 5, removed: ["x"] }));
    expect(r.listing).toBe(l);
    expect(applyEnvEvent(l, ev({ version: 4, assigned: [v("z")] })).listing.variables).toHaveLength(1);
  });

  it("resets and asks for a reload", () => {
    const l = listingFromAnswer({ version: 5, variables: [v("x")] });
    const r = applyEnvEvent(l, ev({ version: 0, reset: true }));
    expect(r.reload).toBe(true);
    expect(r.listing.variables).toEqual([]);
    expect(r.listing.version).toBe(0);
    // after a reset, newer events apply to the empty listing
    expect(applyEnvEvent(r.listing, ev({ version: 1, assigned: [v("q")] })).listing.variables).toHaveLength(1);
  });

  it("applies buffered events in order", () => {
    const l = listingFromAnswer({ version: 2, variables: [v("x")] });
    const r = applyEnvEvents(l, [
      ev({ version: 2, removed: ["x"] }), // already in the listing
      ev({ version: 3, assigned: [v("y")] }),
      ev({ version: 4, removed: ["y"] }),
    ]);
    expect(r.listing.variables.map((x) => x.name)).toEqual(["x"]);
    expect(r.listing.version).toBe(4);
  });

  it("prunes expanded children of changed variables", () => {
    const expanded = new Set([pathKey(["lst"]), pathKey(["lst", 1]), pathKey(["env"])]);
    expect([...pruneExpanded(expanded, ["lst"])]).toEqual([pathKey(["env"])]);
    expect(pruneExpanded(expanded, [], true).size).toBe(0);
  });

  it("appends child pages", () => {
    const p1 = appendChildren(undefined, { total: 3, offset: 0, children: [v("[[1]]"), v("[[2]]")] });
    const p2 = appendChildren(p1, { total: 3, offset: 2, children: [v("[[3]]")] });
    expect(p2.children.map((c) => c.name)).toEqual(["[[1]]", "[[2]]", "[[3]]"]);
    expect(p2.total).toBe(3);
    // a first page again replaces what was there
    expect(appendChildren(p2, { total: 1, offset: 0, children: [v("a")] }).children).toHaveLength(1);
  });
});

describe("envLanguage and envNotice", () => {
  it("shows the pinned language, else the console's, else the first offered", () => {
    expect(envLanguage(null, "python", ["r", "python"])).toBe("python");
    expect(envLanguage("r", "python", ["r", "python"])).toBe("r");
    expect(envLanguage("bash", "python", ["r", "python"])).toBe("python");
    expect(envLanguage(null, "bash", ["r", "python"])).toBe("r");
  });

  it("says 'no session' only when the session is not starting or running", () => {
    expect(envNotice("ready", "running", "")).toBeNull();
    expect(envNotice("loading", "unknown", "")).toBeNull();
    expect(envNotice("no_session", "stopped", "no session")?.text).toMatch(/^no session/);
    expect(envNotice("no_session", "running", "no session")?.text).toBe("waiting for the session…");
    expect(envNotice("no_session", "starting", "no session")?.text).toBe("waiting for the session…");
    expect(envNotice("error", "running", "boom")).toEqual({ text: "boom", error: true });
    expect(envNotice("busy", "running", "busy — updates when it finishes")?.error).toBe(false);
  });
});
