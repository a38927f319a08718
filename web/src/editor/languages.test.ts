import { describe, expect, it } from "vitest";
import { syntaxForPath } from "./languages";

describe("syntaxForPath", () => {
  it("reads the extension table", () => {
    expect(syntaxForPath("fit.R")).toBe("r");
    expect(syntaxForPath("report.Rmd")).toBe("markdown");
    expect(syntaxForPath("doc.Rnw")).toBe("latex");
    expect(syntaxForPath("nb.ipynb")).toBe("json");
    expect(syntaxForPath("data.csv")).toBe("text");
    expect(syntaxForPath("Makefile")).toBe("text");
  });
});
