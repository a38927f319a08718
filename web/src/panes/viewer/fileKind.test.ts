import { describe, expect, it } from "vitest";
import { fileKind, normalizePath, samePath } from "./fileKind";

describe("fileKind", () => {
  it("classifies by extension", () => {
    expect(fileKind("report.html")).toBe("html");
    expect(fileKind("dir/x.HTM")).toBe("html");
    expect(fileKind("a/b/plot.svg")).toBe("image");
    expect(fileKind("p.jpeg")).toBe("image");
    expect(fileKind("doc.pdf")).toBe("pdf");
    expect(fileKind("data.csv")).toBe("text");
    expect(fileKind("model.rds")).toBe("other");
    expect(fileKind("Makefile")).toBe("other");
    expect(fileKind("dir.html/file")).toBe("other");
  });
  it("compares paths", () => {
    expect(normalizePath("./out//report.html")).toBe("out/report.html");
    expect(samePath("/a/b.html", "a/b.html")).toBe(true);
    expect(samePath("a/b.html", "a/c.html")).toBe(false);
    expect(samePath(null, "a")).toBe(false);
  });
});
