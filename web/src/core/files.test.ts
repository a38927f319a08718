import { describe, expect, it } from "vitest";
import { buildTree, extension, fileType, isDocument, isSource, scriptLanguage } from "./files";

describe("files", () => {
  it("classifies by extension", () => {
    expect(extension("a/b/Report.Rmd")).toBe(".rmd");
    expect(extension(".Rprofile")).toBe("");
    expect(isSource("fit.R")).toBe(true);
    expect(isSource("doc.Rnw")).toBe(true);
    expect(isSource("out.html")).toBe(false);
    expect(isSource("data.csv")).toBe(false);
    expect(isDocument("r.qmd")).toBe(true);
    expect(isDocument("x.R")).toBe(false);
    expect(scriptLanguage("a.py")).toBe("python");
    expect(scriptLanguage("run.sh")).toBe("bash");
    expect(scriptLanguage("q.sql")).toBeNull();
  });

  it("follows the one extension table (filetypes.py)", () => {
    // a notebook is a document the Viewer shows, not a source file
    expect(isDocument("nb.ipynb")).toBe(true);
    expect(isSource("nb.ipynb")).toBe(false);
    // Sweave is a source file (LaTeX with R chunks) that is rendered
    expect(isSource("doc.Rnw")).toBe(true);
    expect(isDocument("doc.Rnw")).toBe(true);
    // documents are rendered, never run as scripts
    for (const doc of ["a.Rmd", "a.qmd", "a.md", "a.Rnw", "a.ipynb"]) expect(scriptLanguage(doc)).toBeNull();
    expect(scriptLanguage("x.R")).toBe("r");
    expect(fileType("a/b.BASH")).toMatchObject({ syntax: "bash", language: "bash" });
    expect(fileType("data.csv")).toBeNull();
  });

  it("builds a folder tree", () => {
    const f = (path: string) => ({ path, version: 1, size: 1 });
    const t = buildTree([f("z.R"), f("data/b.csv"), f("data/raw/a.csv"), f("a.R"), f("code/x.py")]);
    expect(t.files.map((x) => x.path)).toEqual(["a.R", "z.R"]);
    expect(t.folders.map((x) => x.path)).toEqual(["code", "data"]);
    expect(t.folders[1].folders[0]).toMatchObject({ name: "raw", path: "data/raw" });
    expect(t.folders[1].folders[0].files[0].path).toBe("data/raw/a.csv");
  });
});
