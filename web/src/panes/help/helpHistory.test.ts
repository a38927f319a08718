import { describe, expect, it } from "vitest";
import {
  back,
  canBack,
  canForward,
  classifyLink,
  currentEntry,
  EMPTY_HISTORY,
  entryFromRequest,
  forward,
  type HelpEntry,
  pushEntry,
} from "./helpHistory";

const t = (topic: string, pkg: string | null = null): HelpEntry => ({ kind: "topic", language: "r", topic, package: pkg });

describe("helpHistory", () => {
  it("pushes, goes back and forward, drops forward history", () => {
    let h = pushEntry(EMPTY_HISTORY, t("mean"));
    h = pushEntry(h, t("sum", "base"));
    h = pushEntry(h, t("sum", "base")); // same again: nothing
    expect(h.entries).toHaveLength(2);
    expect(canBack(h)).toBe(true);
    h = back(h);
    expect(currentEntry(h)).toEqual(t("mean"));
    expect(canForward(h)).toBe(true);
    expect(currentEntry(forward(h))).toEqual(t("sum", "base"));
    h = pushEntry(h, { kind: "search", query: "lm", language: null });
    expect(h.entries.map((e) => e.kind)).toEqual(["topic", "search"]);
    expect(canForward(h)).toBe(false);
    expect(back(back(back(h))).index).toBe(0);
  });

  it("caps the history", () => {
    let h = EMPTY_HISTORY;
    for (let i = 0; i < 150; i++) h = pushEntry(h, t(`t${i}`));
    expect(h.entries).toHaveLength(100);
    expect(currentEntry(h)).toEqual(t("t149"));
  });

  it("turns requests into entries", () => {
    expect(entryFromRequest({ language: "python", topic: "len" })).toEqual({ kind: "topic", language: "python", topic: "len", package: null });
    expect(entryFromRequest({ language: "r", query: " linear model " })).toEqual({ kind: "search", query: "linear model", language: "r" });
    expect(entryFromRequest({ language: "r" })).toBeNull();
  });

  it("classifies links", () => {
    expect(classifyLink({ href: "/api/…", topic: "lm", package: "stats", language: "r" })).toEqual({
      kind: "help",
      entry: { kind: "topic", language: "r", topic: "lm", package: "stats" },
    });
    expect(classifyLink({ href: "x", topic: "os.path", package: "", language: "python" })).toMatchObject({
      entry: { language: "python", package: null },
    });
    expect(classifyLink({ href: "https://cran.r-project.org", topic: null, package: null, language: null })).toEqual({
      kind: "external",
      href: "https://cran.r-project.org",
    });
    expect(classifyLink({ href: "#arguments", topic: null, package: null, language: null })).toEqual({ kind: "anchor", id: "arguments" });
    expect(classifyLink({ href: "mailto:a@b", topic: null, package: null, language: null }).kind).toBe("default");
    expect(classifyLink({ href: "../../base/html/x.html", topic: null, package: null, language: null }).kind).toBe("ignore");
    expect(classifyLink({ href: null, topic: null, package: null, language: null }).kind).toBe("ignore");
  });
});
