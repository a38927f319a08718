import { describe, expect, it } from "vitest";
import { ConsoleModel } from "./model";

function texts(m: ConsoleModel): string[] {
  const out: string[] = [];
  for (let i = 0; i < m.length; i++) out.push(`${m.line(i).kind}:${m.line(i).text}`);
  return out;
}

describe("ConsoleModel", () => {
  it("joins a line that arrives in pieces and splits chunks into lines", () => {
    const m = new ConsoleModel();
    m.write("stdout", "hel");
    m.write("stdout", "lo wor");
    m.write("stdout", "ld\nsecond\nthi");
    m.write("stdout", "rd\n");
    expect(texts(m)).toEqual(["stdout:hello world", "stdout:second", "stdout:third"]);
  });

  it("keeps blank lines and a trailing partial line", () => {
    const m = new ConsoleModel();
    m.write("stdout", "a\n\n\nb");
    expect(texts(m)).toEqual(["stdout:a", "stdout:", "stdout:", "stdout:b"]);
    m.write("stdout", "c\n");
    expect(texts(m)).toEqual(["stdout:a", "stdout:", "stdout:", "stdout:bc"]);
  });

  it("does not mix stdout and stderr on one line", () => {
    const m = new ConsoleModel();
    m.write("stdout", "out ");
    m.write("stderr", "Warning: x\n");
    m.write("stdout", "more\n");
    expect(texts(m)).toEqual(["stdout:out ", "stderr:Warning: x", "stdout:more"]);
  });

  it("returns to the start of the line on \\r (progress bars)", () => {
    const m = new ConsoleModel();
    m.write("stdout", "progress 10%\r");
    m.write("stdout", "progress 50%\rprogress 100%");
    m.write("stdout", "\n");
    expect(texts(m)).toEqual(["stdout:progress 100%"]);
    m.write("stdout", "abcdef\rXY\n");
    expect(texts(m)[1]).toBe("stdout:XYcdef");
  });

  it("treats \\r\\n as one line break, also across chunks", () => {
    const m = new ConsoleModel();
    m.write("stdout", "one\r\ntwo\r");
    m.write("stdout", "\nthree\n");
    expect(texts(m)).toEqual(["stdout:one", "stdout:two", "stdout:three"]);
  });

  it("strips ANSI colours", () => {
    const m = new ConsoleModel();
    m.write("stderr", "\x1b[31mError\x1b[0m: bad\n");
    expect(texts(m)).toEqual(["stderr:Error: bad"]);
  });

  it("adds blocks and plots as whole lines", () => {
    const m = new ConsoleModel();
    m.write("stdout", "partial");
    m.block("result", "[1] 1 2\n[4] 4");
    m.plot({ id: "1", url: "/p/1", mime: "image/png" }, "plot 1");
    m.write("stdout", "after\n");
    expect(texts(m)).toEqual(["stdout:partial", "result:[1] 1 2", "result:[4] 4", "plot:plot 1", "stdout:after"]);
    expect(m.line(3).plot?.url).toBe("/p/1");
  });

  it("keeps only the last maxLines lines and numbers lines across drops", () => {
    const m = new ConsoleModel(100);
    for (let i = 0; i < 250; i++) m.write("stdout", `line ${i}\n`);
    expect(m.length).toBe(100);
    expect(m.dropped).toBe(150);
    expect(m.line(0)).toMatchObject({ n: 150, text: "line 150" });
    expect(m.line(99)).toMatchObject({ n: 249, text: "line 249" });
  });

  it("keeps a partial line writable when it is the newest one", () => {
    const m = new ConsoleModel(3);
    m.write("stdout", "a\nb\nc\nd");
    m.write("stdout", "e\n");
    expect(texts(m)).toEqual(["stdout:b", "stdout:c", "stdout:de"]);
  });

  it("offers the whole transcript, bounded by the archive size", () => {
    const m = new ConsoleModel(10);
    for (let i = 0; i < 30; i++) m.write("stdout", `${i}\n`);
    const all = m.transcript().split("\n").filter(Boolean);
    expect(all).toHaveLength(30);
    expect(all[0]).toBe("0");
    const small = new ConsoleModel(10, 20);
    for (let i = 0; i < 100; i++) small.write("stdout", `${i}\n`);
    const t = small.transcript();
    expect(t).toMatch(/^\[\d+ earlier lines are no longer kept\]\n/);
    expect(t.trimEnd().endsWith("99")).toBe(true);
  });

  it("bumps the version on changes and clears", () => {
    const m = new ConsoleModel();
    const v = m.version;
    m.write("stdout", "x\n");
    expect(m.version).toBeGreaterThan(v);
    m.clear();
    expect(m.length).toBe(0);
    m.write("stdout", "y\n");
    expect(m.line(0).n).toBe(1);
  });
});
