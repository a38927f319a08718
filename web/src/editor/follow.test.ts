import { describe, expect, it } from "vitest";
import { followChoices, followStep } from "./follow";

describe("follow across files", () => {
  const presence = { users: ["alice", "bob", "carol"], files: { bob: "b.R", alice: "a.R" } };

  it("offers everyone else attached, with their file, and anyone in this file", () => {
    expect(followChoices("alice", presence, ["dave"])).toEqual([
      { name: "bob", path: "b.R" },
      { name: "carol", path: undefined },
      { name: "dave", path: undefined },
    ]);
  });

  it("opens the leader's file, stays when already there or when they show none", () => {
    expect(followStep("bob", presence, "a.R")).toEqual({ kind: "open", path: "b.R" });
    expect(followStep("bob", presence, "b.R")).toEqual({ kind: "stay" });
    expect(followStep("carol", presence, "a.R")).toEqual({ kind: "stay" });
  });

  it("stops when the leader leaves", () => {
    const step = followStep("dave", presence, "a.R");
    expect(step.kind).toBe("stop");
    expect(step.kind === "stop" && step.why).toContain("dave left");
  });
});
